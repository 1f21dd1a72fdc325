//! The metadata image: the state the committed metadata log describes, built by applying its records in
//! log order. Every node applies the same records in the same order, so every node's image is the same
//! at the same applied index; a record that does not fit (a second cluster id, a fence of an older
//! registration) is ignored the same way everywhere.
//!
//! Topic records are checked against the image they are applied to: one that does not fit (a taken
//! name, a partition out of order) is refused (`Change::Refused`) and changes nothing, and a batch is
//! applied whole or not at all. Leaders move here too, as a pure function of the image: a fenced
//! leader's partitions go to the first live member of their ISR (or offline, -1), and a broker that is
//! unfenced or registers leads the offline partitions whose ISR holds it.

use super::partition_changes;
use super::records::{ConfigTarget, Election, MetadataRecord};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// A registered broker, as the metadata log describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub node_id: i32,
    /// The log index of the registration: it changes with every registration (every broker start).
    pub epoch: i64,
    pub incarnation: u64,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    /// Fenced by the active controller (not heard from within the session timeout): not listed to
    /// clients until it is heard again or registers anew.
    pub fenced: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetadataImage {
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// The first producer id no block has taken yet.
    pub next_producer_id: i64,
    /// The index of the last entry applied.
    pub applied_index: u64,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicImage>,
    /// Dynamic configs of every broker (Kafka's resource name ""), by Kafka name.
    pub broker_default_configs: BTreeMap<String, String>,
    /// A `TopicsMigrated` record is committed: the image's topics are the cluster's topics.
    pub topics_migrated: bool,
    /// Indexes of `topics` kept by `apply` (so that replaying a log of many topics stays linear):
    /// names by topic id, and the names in Kafka's collision form.
    topic_names: BTreeMap<Uuid, String>,
    normalized_names: BTreeSet<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicImage {
    pub id: Uuid,
    pub configs: BTreeMap<String, String>,
    /// By partition index.
    pub partitions: Vec<PartitionImage>,
}

/// One partition's replicas and leadership: the same state the shards' metadata carries (leader -1:
/// every in-sync replica is fenced; the leader epoch moves whenever the leader changes, the partition
/// epoch on every change).
pub use crate::metadata::PartitionState as PartitionImage;

/// What a batch may change besides its brokers, saved before it is applied (`apply_batch`).
struct Saved {
    cluster_id: Option<String>,
    next_producer_id: i64,
    broker_default_configs: BTreeMap<String, String>,
    topics_migrated: bool,
    /// Each topic a record names, as it was (None: absent).
    topics: Vec<(String, Option<TopicImage>)>,
}

/// Every partition of `topics`.
fn partitions_mut(
    topics: &mut BTreeMap<String, TopicImage>,
) -> impl Iterator<Item = &mut PartitionImage> {
    topics
        .values_mut()
        .flat_map(|topic| topic.partitions.iter_mut())
}

/// Partition `partition` of the topic with id `topic_id`, and the topic's name.
fn find_partition<'a>(
    topic_names: &'a BTreeMap<Uuid, String>,
    topics: &'a mut BTreeMap<String, TopicImage>,
    topic_id: &Uuid,
    partition: i32,
) -> Option<(&'a String, &'a mut PartitionImage)> {
    let name = topic_names.get(topic_id)?;
    let topic = topics.get_mut(name)?;
    Some((
        name,
        topic.partitions.get_mut(usize::try_from(partition).ok()?)?,
    ))
}

/// How much a change weighs in a batch's change (`MetadataImage::apply_batch`).
fn rank(change: Change) -> u8 {
    match change {
        Change::None => 0,
        Change::ProducerIds => 1,
        Change::ClusterId => 2,
        Change::Brokers => 3,
        Change::Topics => 4,
        Change::Refused => 5,
    }
}

use super::partition_changes::is_well_formed;

/// The config allowing an out-of-sync replica to lead (topic, or the brokers' dynamic default).
const UNCLEAN_LEADER_ELECTION: &str = "unclean.leader.election.enable";

/// Kafka's collision rule: topic names that differ only in '.' against '_' collide (their metric
/// names would be the same).
fn normalized(name: &str) -> String {
    name.replace('.', "_")
}

/// The ids of this node's current producer-id block not yet handed out: `next..end` (the control
/// plane's, `control::producer_ids`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProducerIdBlock {
    pub next: i64,
    pub end: i64,
}

/// What applying one record changed, for those who publish the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    None,
    ClusterId,
    Brokers,
    /// A producer-id block was taken.
    ProducerIds,
    /// Topics, partitions, leaders or configs changed.
    Topics,
    /// The record (or a record of the batch) did not fit the image and changed nothing.
    Refused,
}

impl MetadataImage {
    /// Applies the record of the entry at `index` (entries must come in log order).
    ///
    /// A refused record (`Change::Refused`) leaves the image as it was, but for `applied_index`, which
    /// moves to `index` whatever the record.
    pub fn apply(&mut self, index: u64, record: &MetadataRecord) -> Change {
        debug_assert!(index > self.applied_index, "entries applied out of order");
        self.applied_index = index;
        match record {
            MetadataRecord::Batch(records) => self.apply_batch(index, records),
            record => self.apply_one(index, record),
        }
    }

    /// Applies one record that is not a batch.
    fn apply_one(&mut self, index: u64, record: &MetadataRecord) -> Change {
        match record {
            MetadataRecord::ClusterId { cluster_id } => {
                // A cluster id meta.properties could not hold is never adopted (no broker proposes one).
                if self.cluster_id.is_some()
                    || !crate::meta_properties::is_valid_cluster_id(cluster_id)
                {
                    return Change::None;
                }
                self.cluster_id = Some(cluster_id.clone());
                Change::ClusterId
            }
            MetadataRecord::RegisterBroker {
                node_id,
                incarnation,
                host,
                port,
                rack,
            } => {
                self.brokers.insert(
                    *node_id,
                    BrokerRegistration {
                        node_id: *node_id,
                        epoch: index as i64,
                        incarnation: *incarnation,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        fenced: false,
                    },
                );
                self.elect_offline_leaders(*node_id);
                Change::Brokers
            }
            MetadataRecord::FenceBroker { node_id, epoch }
            | MetadataRecord::UnfenceBroker { node_id, epoch } => {
                let fence = matches!(record, MetadataRecord::FenceBroker { .. });
                match self.brokers.get_mut(node_id) {
                    // Only the registration it names: a broker that registered again since is another.
                    Some(broker) if broker.epoch == *epoch && broker.fenced != fence => {
                        broker.fenced = fence;
                        if fence {
                            self.replace_fenced_leader(*node_id);
                        } else {
                            self.elect_offline_leaders(*node_id);
                        }
                        Change::Brokers
                    }
                    _ => Change::None,
                }
            }
            MetadataRecord::ProducerIds {
                first_id, count, ..
            } => {
                if *first_id < self.next_producer_id || *count <= 0 {
                    return Change::None;
                }
                self.next_producer_id = first_id.saturating_add(i64::from(*count));
                Change::ProducerIds
            }
            MetadataRecord::Topic {
                topic_id,
                name,
                configs,
            } => {
                if name.is_empty()
                    || topic_id.is_nil()
                    || self.topic_names.contains_key(topic_id)
                    || self.normalized_names.contains(&normalized(name))
                {
                    return Change::Refused;
                }
                self.topic_names.insert(*topic_id, name.clone());
                self.normalized_names.insert(normalized(name));
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        id: *topic_id,
                        configs: configs.iter().cloned().collect(),
                        partitions: Vec::new(),
                    },
                );
                Change::Topics
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
            } => {
                let Some(topic) = self
                    .topic_names
                    .get(topic_id)
                    .and_then(|name| self.topics.get_mut(name))
                else {
                    return Change::Refused;
                };
                if usize::try_from(*partition) != Ok(topic.partitions.len())
                    || !is_well_formed(replicas, isr, *leader)
                {
                    return Change::Refused;
                }
                let mut partition = PartitionImage {
                    replicas: replicas.clone(),
                    isr: isr.clone(),
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
                    adding_replicas: Vec::new(),
                    removing_replicas: Vec::new(),
                };
                // Placed from the proposer's view, which may be older than the log's: a leader that is
                // not a live broker here gives way to a live ISR member, else none, as a fence would
                // have done (a broker registering later takes the partitions whose ISR names it).
                let brokers = &self.brokers;
                let live = |id: &i32| brokers.get(id).is_some_and(|broker| !broker.fenced);
                if partition.leader != -1 && !live(&partition.leader) {
                    let leader = partition.isr.iter().copied().find(live).unwrap_or(-1);
                    partition_changes::set_leader(&mut partition, leader);
                }
                topic.partitions.push(partition);
                Change::Topics
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                let Some(name) = self.topic_names.remove(topic_id) else {
                    return Change::Refused;
                };
                self.normalized_names.remove(&normalized(&name));
                self.topics.remove(&name);
                Change::Topics
            }
            MetadataRecord::Config {
                target,
                name,
                value,
            } => {
                let configs = match target {
                    ConfigTarget::BrokerDefault => &mut self.broker_default_configs,
                    ConfigTarget::Topic(topic) => match self.topics.get_mut(topic) {
                        Some(topic) => &mut topic.configs,
                        None => return Change::Refused,
                    },
                };
                // Setting a config to the value it has, or removing one that is not set, changes
                // nothing: Change::None, not a refusal.
                let changed = match value {
                    Some(value) => {
                        configs.insert(name.clone(), value.clone()).as_ref() != Some(value)
                    }
                    None => configs.remove(name).is_some(),
                };
                if !changed {
                    return Change::None;
                }
                if name == UNCLEAN_LEADER_ELECTION {
                    // Only the topic the record names (a batch saves only those for its rollback);
                    // a brokers' default reaches every topic (its batches work on a clone).
                    match target {
                        ConfigTarget::Topic(topic) => self.elect_unclean_leaders(Some(topic)),
                        ConfigTarget::BrokerDefault => self.elect_unclean_leaders(None),
                    }
                }
                Change::Topics
            }
            MetadataRecord::TopicsMigrated => {
                if self.topics_migrated {
                    return Change::Refused;
                }
                self.topics_migrated = true;
                Change::Topics
            }
            MetadataRecord::AlterPartition {
                topic_id,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                isr,
            } => {
                let brokers = &self.brokers;
                let live = |id: &i32| brokers.get(id).is_some_and(|broker| !broker.fenced);
                let Some((_, state)) =
                    find_partition(&self.topic_names, &mut self.topics, topic_id, *partition)
                else {
                    return Change::Refused;
                };
                let altered = partition_changes::alter_isr(
                    state,
                    *leader,
                    *leader_epoch,
                    *partition_epoch,
                    isr,
                    live,
                );
                if altered {
                    Change::Topics
                } else {
                    Change::Refused
                }
            }
            MetadataRecord::ElectLeader {
                topic_id,
                partition,
                partition_epoch,
                election,
            } => {
                let brokers = &self.brokers;
                let live = |id: &i32| brokers.get(id).is_some_and(|broker| !broker.fenced);
                let Some((name, state)) =
                    find_partition(&self.topic_names, &mut self.topics, topic_id, *partition)
                else {
                    return Change::Refused;
                };
                // The epoch it was proposed at is not required: the election is checked again
                // against the partition as it is now (an ISR change meanwhile does not void it).
                let _ = partition_epoch;
                if !partition_changes::elect(state, *election, live, name, *partition) {
                    return Change::Refused;
                }
                Change::Topics
            }
            MetadataRecord::Reassign {
                topic_id,
                partition,
                target,
            } => {
                let brokers = &self.brokers;
                let live = |id: &i32| brokers.get(id).is_some_and(|broker| !broker.fenced);
                let registered = |id: &i32| brokers.contains_key(id);
                let Some((name, state)) =
                    find_partition(&self.topic_names, &mut self.topics, topic_id, *partition)
                else {
                    return Change::Refused;
                };
                if !partition_changes::reassign(state, target.as_deref(), registered, live) {
                    return Change::Refused;
                }
                tracing::info!(
                    topic = %name,
                    partition,
                    replicas = ?state.replicas,
                    adding = ?state.adding_replicas,
                    removing = ?state.removing_replicas,
                    "partition reassignment changed"
                );
                Change::Topics
            }
            // Only `apply` takes batches; one inside a batch is refused.
            MetadataRecord::Batch(_) => Change::Refused,
        }
    }

    /// Applies `records` whole or not at all: on a clone of the image, adopted only if no record is
    /// refused (a batch inside the batch is refused). The change is `Topics` if any record changed
    /// topics, else the largest of the records' changes (`Brokers` > `ClusterId` > `ProducerIds` >
    /// `None`); an empty batch is `None`.
    fn apply_batch(&mut self, index: u64, records: &[MetadataRecord]) -> Change {
        // Records about brokers move leaders anywhere: those batches (none of ours) work on a clone.
        // The others touch only the topics they name, which are saved before their first change, so
        // a batch costs what it changes, not the size of the image.
        let touches_brokers = records.iter().any(|record| {
            matches!(
                record,
                MetadataRecord::RegisterBroker { .. }
                    | MetadataRecord::FenceBroker { .. }
                    | MetadataRecord::UnfenceBroker { .. }
                    // May elect leaders of any topic (unclean.leader.election.enable).
                    | MetadataRecord::Config {
                        target: ConfigTarget::BrokerDefault,
                        ..
                    }
            )
        });
        if touches_brokers {
            let mut next = self.clone();
            let change = next.apply_records(index, records);
            if change != Change::Refused {
                *self = next;
            }
            return change;
        }
        let saved = Saved {
            cluster_id: self.cluster_id.clone(),
            next_producer_id: self.next_producer_id,
            broker_default_configs: self.broker_default_configs.clone(),
            topics_migrated: self.topics_migrated,
            topics: records
                .iter()
                .filter_map(|record| self.named_topic(record))
                .map(|name| (name.clone(), self.topics.get(&name).cloned()))
                .collect(),
        };
        let change = self.apply_records(index, records);
        if change == Change::Refused {
            self.cluster_id = saved.cluster_id;
            self.next_producer_id = saved.next_producer_id;
            self.broker_default_configs = saved.broker_default_configs;
            self.topics_migrated = saved.topics_migrated;
            // In reverse, so a topic saved twice ends as it was first.
            for (name, topic) in saved.topics.into_iter().rev() {
                if let Some(now) = self.topics.remove(&name) {
                    self.topic_names.remove(&now.id);
                    self.normalized_names.remove(&normalized(&name));
                }
                if let Some(topic) = topic {
                    self.topic_names.insert(topic.id, name.clone());
                    self.normalized_names.insert(normalized(&name));
                    self.topics.insert(name, topic);
                }
            }
        }
        change
    }

    /// Applies `records` in order, stopping at the first refused one (`Change::Refused`). A cluster id
    /// is refused in a batch: its adoption (formatting the directory) follows a record of its own.
    fn apply_records(&mut self, index: u64, records: &[MetadataRecord]) -> Change {
        let mut change = Change::None;
        for record in records {
            if matches!(record, MetadataRecord::ClusterId { .. }) {
                return Change::Refused;
            }
            let applied = self.apply_one(index, record);
            if applied == Change::Refused {
                return Change::Refused;
            }
            if rank(applied) > rank(change) {
                change = applied;
            }
        }
        change
    }

    /// The name of the topic a record changes, if it names one (by name or by id).
    fn named_topic(&self, record: &MetadataRecord) -> Option<String> {
        match record {
            MetadataRecord::Topic { name, .. } => Some(name.clone()),
            MetadataRecord::Config {
                target: ConfigTarget::Topic(name),
                ..
            } => Some(name.clone()),
            MetadataRecord::Partition { topic_id, .. }
            | MetadataRecord::AlterPartition { topic_id, .. }
            | MetadataRecord::ElectLeader { topic_id, .. }
            | MetadataRecord::Reassign { topic_id, .. }
            | MetadataRecord::RemoveTopic { topic_id } => self.topic_names.get(topic_id).cloned(),
            _ => None,
        }
    }

    /// Adds `topic` as a snapshot holds it (`snapshot::decode`), with its indexes; false (and nothing
    /// added) if its id is nil or taken or its name is empty or collides with one here, as `Topic`
    /// records are refused.
    pub(super) fn restore_topic(&mut self, name: String, topic: TopicImage) -> bool {
        if name.is_empty() || topic.id.is_nil() || self.holds_topic(topic.id, &name) {
            return false;
        }
        self.topic_names.insert(topic.id, name.clone());
        self.normalized_names.insert(normalized(&name));
        self.topics.insert(name, topic);
        true
    }

    /// Whether a topic with id `topic_id`, or a name `name` collides with, is here.
    pub fn holds_topic(&self, topic_id: Uuid, name: &str) -> bool {
        self.topic_names.contains_key(&topic_id)
            || self.normalized_names.contains(&normalized(name))
    }

    /// The topic with id `topic_id`, and its name.
    pub fn topic_by_id(&self, topic_id: Uuid) -> Option<(&String, &TopicImage)> {
        let name = self.topic_names.get(&topic_id)?;
        self.topics.get_key_value(name)
    }

    /// After `node_id` is fenced: it leaves the ISR of every partition where it is not the last member
    /// (KRaft's fencing; the last one stays, so the partition can come back with it and nothing
    /// committed is lost), and each partition it led goes to the first registered, unfenced member of
    /// its ISR (in ISR order), else offline (-1): no unclean election.
    fn replace_fenced_leader(&mut self, node_id: i32) {
        let brokers = &self.brokers;
        let live = |id: &&i32| brokers.get(*id).is_some_and(|broker| !broker.fenced);
        for partition in partitions_mut(&mut self.topics) {
            if partition.isr.len() > 1 && partition.isr.contains(&node_id) {
                partition.isr.retain(|id| *id != node_id);
                partition.partition_epoch = partition.partition_epoch.wrapping_add(1);
            }
            if partition.leader == node_id {
                let leader = partition.isr.iter().find(live).copied().unwrap_or(-1);
                partition_changes::set_leader(partition, leader);
            }
        }
        self.elect_unclean_leaders(None);
    }

    /// Each offline partition of a topic with `unclean.leader.election.enable` (its own config, else a
    /// brokers' default should the log hold one; `only`: of that topic alone) gets an unclean election
    /// (`partition_changes::elect`): a live replica out of sync leads, alone in its ISR; what the old
    /// ISR had and it lacks is lost, and logged as such.
    fn elect_unclean_leaders(&mut self, only: Option<&str>) {
        let brokers = &self.brokers;
        let live = |id: &i32| brokers.get(id).is_some_and(|broker| !broker.fenced);
        let default = self.broker_default_configs.get(UNCLEAN_LEADER_ELECTION);
        for (name, topic) in self.topics.iter_mut() {
            if only.is_some_and(|only| only != name) {
                continue;
            }
            let enabled = topic
                .configs
                .get(UNCLEAN_LEADER_ELECTION)
                .or(default)
                .is_some_and(|value| value.eq_ignore_ascii_case("true"));
            if !enabled {
                continue;
            }
            for (index, partition) in topic.partitions.iter_mut().enumerate() {
                partition_changes::elect(partition, Election::Unclean, live, name, index as i32);
            }
        }
    }

    /// After `node_id` is unfenced or registers: it leads each offline partition whose ISR holds it
    /// (and, where unclean election is enabled, those where it is a replica out of sync).
    fn elect_offline_leaders(&mut self, node_id: i32) {
        for partition in partitions_mut(&mut self.topics) {
            if partition.leader == -1 && partition.isr.contains(&node_id) {
                partition_changes::set_leader(partition, node_id);
            }
        }
        self.elect_unclean_leaders(None);
    }

    /// An entry without a record (Raft's no-op) still moves the applied index.
    pub fn skip(&mut self, index: u64) {
        debug_assert!(index > self.applied_index, "entries applied out of order");
        self.applied_index = index;
    }

    /// The brokers clients are told about: registered and not fenced, by id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|broker| !broker.fenced)
    }
}

#[cfg(test)]
#[path = "image_tests.rs"]
mod tests;
