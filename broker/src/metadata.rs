//! Cluster metadata: topics, their partitions (replicas, leader), configs and partition → shard placement.
//!
//! One immutable snapshot ([`ClusterMetadata`]) is shared by every shard (`Arc`); shard 0 (the control
//! plane) makes each new version and broadcasts it. It persists in `<data-dir>/cluster_metadata.toml`,
//! written to a temporary file, fsynced and renamed over the old one, so a crash leaves either the old or
//! the new version. The version it replaces stays as `cluster_metadata.toml.prev` (a hard link made
//! before the rename, so it is never partly written); start-up falls back to it when the current file is
//! missing or unreadable. Format (TOML):
//!
//! ```toml
//! cluster_id = "…"            # generated on first start; the metadata quorum's once it is committed
//! next_producer_id = 1000     # ids below were handed out before the metadata quorum: producer-id
//!                             # blocks start at or past it (see `control::producer_ids`)
//! quorum_managed = true       # the topics are the metadata quorum's (absent before it carried them)
//! [topics.orders]
//! id = "uuid"
//! shards = [0, 1, 0]          # owning shard of each partition on this node, by index
//! [topics.orders.configs]     # overrides only
//! "max.message.bytes" = "2048"
//! [broker_default_configs]    # dynamic broker configs for every broker (AlterConfigs, resource "")
//! "log.retention.ms" = "3600000"
//! [broker_configs]            # dynamic broker configs of this broker (AlterConfigs, resource "<node id>")
//! "log.cleaner.backoff.ms" = "1000"
//! ```
//!
//! Both broker config tables are absent from files written before dynamic configs existed (they load
//! empty) and hold only validated dynamic settings, by Kafka name.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use uuid::Uuid;

pub const METADATA_FILE: &str = "cluster_metadata.toml";
pub const PREVIOUS_METADATA_FILE: &str = "cluster_metadata.toml.prev";

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ClusterMetadata {
    pub cluster_id: String,
    pub next_producer_id: i64,
    /// Bumped on every change (not persisted).
    #[serde(skip)]
    pub version: u64,
    #[serde(default)]
    pub topics: BTreeMap<String, TopicMetadata>,
    /// Dynamic broker configs for every broker (Kafka's DYNAMIC_DEFAULT_BROKER_CONFIG), by Kafka name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub broker_default_configs: BTreeMap<String, String>,
    /// Dynamic broker configs of this broker (Kafka's DYNAMIC_BROKER_CONFIG), by Kafka name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub broker_configs: BTreeMap<String, String>,
    /// The live brokers of the cluster, from the metadata quorum's image (not persisted here: the
    /// quorum's log holds them). Empty until the quorum has registered any.
    #[serde(skip)]
    pub brokers: Vec<BrokerEndpoint>,
    /// The topics above come from the metadata quorum's log (its image), which owns them; this file
    /// keeps them, with their partitions' replicas and leaders, as this node's cache and the local
    /// placement on shards. False in files written before the quorum carried topics: their topics are
    /// proposed to the quorum once (`quorum::node`, the migration).
    #[serde(default)]
    pub quorum_managed: bool,
    /// This node's id (not persisted: the configuration's), for leadership checks.
    #[serde(skip)]
    pub node_id: i32,
    /// The metadata quorum's active controller, when known (not persisted).
    #[serde(skip)]
    pub controller_id: Option<i32>,
    /// The index of the quorum's image the topics were last taken from. A start replays the log up to
    /// what this node knew committed, which may be less: topics are not taken from an image older than
    /// this (a topic created in between would otherwise look deleted, and be).
    #[serde(default)]
    pub applied_index: u64,
    /// Topics that left this version without being deleted (this node's own topics the cluster's log
    /// does not hold, when the quorum takes over): their directories are moved aside, not deleted.
    /// Not persisted.
    #[serde(skip)]
    pub dropped_topics: std::collections::BTreeSet<Uuid>,
}

/// A live broker, as Metadata and DescribeCluster list it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerEndpoint {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TopicMetadata {
    pub id: Uuid,
    /// `shards[p]` owns partition `p` on this node (where this node hosts it).
    pub shards: Vec<usize>,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    /// Each partition's replicas and leader, by index, from the metadata quorum's image (not persisted:
    /// the quorum's log holds them, and a file of 100,000 partitions' states took seconds to write and
    /// read, see BENCHMARKS.md). Empty for a topic the quorum does not manage yet, and after a start of a
    /// cluster of one until the image is published: this node leads all its partitions.
    #[serde(skip)]
    pub partitions: Vec<PartitionState>,
}

/// A partition's replicas and leadership, as the metadata quorum's image has them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionState {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// -1: none (offline, or not known yet after a start).
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// Replicas an ongoing reassignment adds (Kafka's `addingReplicas`): already in `replicas`,
    /// catching up as followers; the reassignment completes once every target replica is in the ISR.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<i32>,
    /// Replicas an ongoing reassignment removes (Kafka's `removingReplicas`): still in `replicas`
    /// (and perhaps the ISR and leading) until it completes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<i32>,
}

impl PartitionState {
    /// Whether a reassignment is under way.
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas a reassignment moves to (`replicas` without those it removes), or `replicas`.
    pub fn target_replicas(&self) -> Vec<i32> {
        let removing = &self.removing_replicas;
        self.replicas
            .iter()
            .copied()
            .filter(|id| !removing.contains(id))
            .collect()
    }
}

/// Why a partition is not served by this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotServed {
    /// No such topic or partition.
    Unknown,
    /// Another node leads it (`leader` -1: none now); Kafka's NOT_LEADER_OR_FOLLOWER, or
    /// LEADER_NOT_AVAILABLE without a leader.
    NotLeader { leader: i32, leader_epoch: i32 },
}

impl NotServed {
    /// The error a request for the partition gets here.
    pub fn error(self) -> kafka_protocol::error::ResponseError {
        match self {
            NotServed::Unknown => kafka_protocol::error::ResponseError::UnknownTopicOrPartition,
            NotServed::NotLeader { .. } => {
                kafka_protocol::error::ResponseError::NotLeaderOrFollower
            }
        }
    }
}

impl TopicMetadata {
    pub fn partition_count(&self) -> i32 {
        self.shards.len() as i32
    }

    /// The state of partition `index`: the quorum's, or (for a topic it does not manage yet) this node
    /// as the only replica and leader from epoch 0.
    pub fn partition_state(&self, index: i32, node_id: i32) -> Option<PartitionState> {
        let position = usize::try_from(index).ok()?;
        if position >= self.shards.len() {
            return None;
        }
        Some(match self.partitions.get(position) {
            Some(state) => state.clone(),
            None => PartitionState {
                replicas: vec![node_id],
                isr: vec![node_id],
                leader: node_id,
                leader_epoch: 0,
                partition_epoch: 0,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            },
        })
    }

    /// Whether node `node_id` holds a replica of partition `index` (leads or follows it).
    pub fn replicated_on(&self, index: i32, node_id: i32) -> bool {
        match usize::try_from(index)
            .ok()
            .and_then(|position| self.partitions.get(position))
        {
            Some(state) => state.replicas.contains(&node_id),
            None => index >= 0 && index < self.partition_count(),
        }
    }

    /// Whether node `node_id` leads partition `index`.
    pub fn led_by(&self, index: i32, node_id: i32) -> bool {
        match usize::try_from(index)
            .ok()
            .and_then(|position| self.partitions.get(position))
        {
            Some(state) => state.leader == node_id,
            None => index >= 0 && index < self.partition_count(),
        }
    }
}

impl ClusterMetadata {
    pub fn new_cluster() -> ClusterMetadata {
        ClusterMetadata {
            cluster_id: short_cluster_id(Uuid::new_v4()),
            next_producer_id: 0,
            version: 1,
            topics: BTreeMap::new(),
            broker_default_configs: BTreeMap::new(),
            broker_configs: BTreeMap::new(),
            brokers: Vec::new(),
            quorum_managed: false,
            node_id: 0,
            controller_id: None,
            applied_index: 0,
            dropped_topics: Default::default(),
        }
    }

    /// Loads the metadata file, or creates a new cluster where there is none (tests; the broker starts
    /// through `data_dir::load_metadata`, which also checks the directory).
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<ClusterMetadata> {
        match ClusterMetadata::load_file(&data_dir.join(METADATA_FILE)) {
            Ok(Some(metadata)) => Ok(metadata),
            Ok(None) => {
                let metadata = ClusterMetadata::new_cluster();
                metadata.persist(data_dir)?;
                Ok(metadata)
            }
            Err(error) => Err(error),
        }
    }

    /// Reads one metadata file: `None` if it does not exist, `InvalidData` if it does not parse.
    pub fn load_file(path: &Path) -> std::io::Result<Option<ClusterMetadata>> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut metadata: ClusterMetadata = toml::from_str(&text).map_err(|error| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: {error}", path.display()),
                    )
                })?;
                metadata.version = 1;
                Ok(Some(metadata))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => Err(
                std::io::Error::new(error.kind(), format!("{}: {error}", path.display())),
            ),
            Err(error) => Err(error),
        }
    }

    /// Atomically replaces the metadata file (write temp, fsync, rename, fsync the directory), keeping
    /// the version it replaces as [`PREVIOUS_METADATA_FILE`].
    pub fn persist(&self, data_dir: &Path) -> std::io::Result<()> {
        let text =
            toml::to_string(self).map_err(|error| std::io::Error::other(error.to_string()))?;
        let temporary = data_dir.join(format!("{METADATA_FILE}.tmp"));
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        let current = data_dir.join(METADATA_FILE);
        if current.exists() {
            // Link the current inode under a temporary name, then rename that over the previous copy:
            // `.prev` is always some complete version, never a partly written file.
            let previous_temporary = data_dir.join(format!("{PREVIOUS_METADATA_FILE}.tmp"));
            let _ = std::fs::remove_file(&previous_temporary);
            std::fs::hard_link(&current, &previous_temporary)?;
            std::fs::rename(&previous_temporary, data_dir.join(PREVIOUS_METADATA_FILE))?;
        }
        std::fs::rename(&temporary, &current)?;
        std::fs::File::open(data_dir)?.sync_all()
    }

    /// The dynamic broker configs in force (see [`crate::config::dynamic`]).
    pub fn dynamic_configs(&self) -> crate::config::dynamic::DynamicConfigs<'_> {
        crate::config::dynamic::DynamicConfigs {
            cluster_default: &self.broker_default_configs,
            this_broker: &self.broker_configs,
        }
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<(&String, &TopicMetadata)> {
        self.topics.iter().find(|(_, topic)| topic.id == id)
    }

    /// The leader epoch of a partition (0 for a topic the quorum does not manage yet, or none known).
    pub fn leader_epoch(&self, topic: &str, partition: i32) -> storage::types::LeaderEpoch {
        let epoch = self
            .topics
            .get(topic)
            .and_then(|topic| topic.partitions.get(usize::try_from(partition).ok()?))
            .map_or(0, |state| state.leader_epoch);
        storage::types::LeaderEpoch(epoch)
    }

    /// The topic's `min.insync.replicas`: its own config, else the brokers' dynamic default, else 1.
    pub fn min_insync_replicas(&self, topic: &str) -> usize {
        const NAME: &str = "min.insync.replicas";
        self.topics
            .get(topic)
            .and_then(|topic| topic.configs.get(NAME))
            .or_else(|| self.broker_default_configs.get(NAME))
            .and_then(|value| value.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1)
    }

    /// Whether the partition exists (whoever leads it).
    pub fn has_partition(&self, topic: &str, partition: i32) -> bool {
        self.topics
            .get(topic)
            .is_some_and(|topic| partition >= 0 && partition < topic.partition_count())
    }

    /// The shard of this node that serves a partition: it exists and this node leads it. Requests for
    /// anything else are refused (see [`Self::route`] for why).
    pub fn shard_of(&self, topic: &str, partition: i32) -> Option<usize> {
        self.route(topic, partition).ok()
    }

    /// The shard serving a partition here, or why it is not served here.
    pub fn route(&self, topic: &str, partition: i32) -> Result<usize, NotServed> {
        let metadata = self.topics.get(topic).ok_or(NotServed::Unknown)?;
        let index = usize::try_from(partition).map_err(|_| NotServed::Unknown)?;
        let shard = *metadata.shards.get(index).ok_or(NotServed::Unknown)?;
        match metadata.partitions.get(index) {
            Some(state) if state.leader != self.node_id => Err(NotServed::NotLeader {
                leader: state.leader,
                leader_epoch: state.leader_epoch,
            }),
            _ => Ok(shard),
        }
    }

    /// The shard holding this node's replica of a partition, whether it leads or follows it (a
    /// follower serves consumers' fetches from v11, KIP-392), or why there is none here.
    pub fn route_replica(&self, topic: &str, partition: i32) -> Result<usize, NotServed> {
        match self.route(topic, partition) {
            Err(not_leader @ NotServed::NotLeader { .. }) => {
                let metadata = self.topics.get(topic).ok_or(NotServed::Unknown)?;
                let shard = usize::try_from(partition)
                    .ok()
                    .and_then(|index| metadata.shards.get(index));
                match shard {
                    Some(&shard) if metadata.replicated_on(partition, self.node_id) => Ok(shard),
                    _ => Err(not_leader),
                }
            }
            routed => routed,
        }
    }

    /// Marks every partition the quorum manages as without a leader (and replicas unknown), until its
    /// image is published.
    pub fn forget_leaders(&mut self) {
        if !self.quorum_managed {
            return;
        }
        for topic in self.topics.values_mut() {
            topic.partitions = vec![
                PartitionState {
                    replicas: Vec::new(),
                    isr: Vec::new(),
                    leader: -1,
                    adding_replicas: Vec::new(),
                    removing_replicas: Vec::new(),
                    leader_epoch: 0,
                    partition_epoch: 0,
                };
                topic.shards.len()
            ];
        }
    }

    /// Whether what `persist` writes differs from `other`'s (the partitions' states are not written).
    pub fn persisted_differs(&self, other: &ClusterMetadata) -> bool {
        let topics_differ =
            self.topics.len() != other.topics.len()
                || self.topics.iter().zip(&other.topics).any(
                    |((name, topic), (other_name, other))| {
                        name != other_name
                            || topic.id != other.id
                            || topic.shards != other.shards
                            || topic.configs != other.configs
                    },
                );
        topics_differ
            || self.cluster_id != other.cluster_id
            || self.next_producer_id != other.next_producer_id
            || self.quorum_managed != other.quorum_managed
            || self.broker_default_configs != other.broker_default_configs
            || self.broker_configs != other.broker_configs
    }

    /// The brokers Metadata and DescribeCluster list: the quorum's live brokers, with this broker
    /// always among them (it is answering, so it is alive, even before its registration is committed).
    pub fn listed_brokers(&self, config: &crate::config::BrokerConfig) -> Vec<BrokerEndpoint> {
        let mut brokers = self.brokers.clone();
        if !brokers
            .iter()
            .any(|broker| broker.node_id == config.node_id)
        {
            brokers.push(BrokerEndpoint {
                node_id: config.node_id,
                host: config.advertise_host.clone(),
                port: config.advertise_port,
                rack: config.rack.clone(),
            });
            brokers.sort_by_key(|broker| broker.node_id);
        }
        brokers
    }

    /// A live broker's endpoint, by node id.
    pub fn broker(&self, node_id: i32) -> Option<&BrokerEndpoint> {
        self.brokers.iter().find(|broker| broker.node_id == node_id)
    }

    /// Places `count` new partitions, each on the shard that owns the fewest partitions so far.
    pub fn place_partitions(&self, shards: usize, count: usize) -> Vec<usize> {
        let mut load = vec![0usize; shards];
        for topic in self.topics.values() {
            for &shard in &topic.shards {
                if shard < shards {
                    load[shard] += 1;
                }
            }
        }
        (0..count)
            .map(|_| {
                let (shard, _) = load
                    .iter()
                    .enumerate()
                    .min_by_key(|&(shard, &owned)| (owned, shard))
                    .expect("at least one shard");
                load[shard] += 1;
                shard
            })
            .collect()
    }

    /// After a restart with fewer shards: moves partitions placed on shards that no longer exist to the
    /// least-loaded remaining ones. Partition directories do not depend on the shard, so only ownership
    /// changes. Returns how many partitions moved.
    pub fn fit_to_shards(&mut self, shards: usize) -> usize {
        let mut moved = 0;
        let names: Vec<String> = self.topics.keys().cloned().collect();
        for name in names {
            let count = self.topics[&name].shards.len();
            for index in 0..count {
                if self.topics[&name].shards[index] >= shards {
                    let shard = self.place_partitions(shards, 1)[0];
                    self.topics.get_mut(&name).expect("listed above").shards[index] = shard;
                    moved += 1;
                }
            }
        }
        moved
    }
}

/// Kafka cluster ids are 22-character URL-safe base64 UUIDs.
fn short_cluster_id(uuid: Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = uuid.as_u128();
    (0..22)
        .map(|i| ALPHABET[((bytes >> (i * 6)) & 63) as usize] as char)
        .collect()
}

/// The directory of a partition: `<data-dir>/<topic>-<partition>`.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_balances_partitions_over_shards() {
        let mut metadata = ClusterMetadata::new_cluster();
        let shards = metadata.place_partitions(3, 4);
        assert_eq!(shards, vec![0, 1, 2, 0]);
        metadata.topics.insert(
            "a".into(),
            TopicMetadata {
                id: Uuid::new_v4(),
                shards,
                configs: BTreeMap::new(),
                partitions: Vec::new(),
            },
        );
        assert_eq!(metadata.place_partitions(3, 2), vec![1, 2]);
    }

    #[test]
    fn partitions_of_vanished_shards_move() {
        let mut metadata = ClusterMetadata::new_cluster();
        metadata.topics.insert(
            "a".into(),
            TopicMetadata {
                id: Uuid::new_v4(),
                shards: vec![0, 1, 2, 3],
                configs: BTreeMap::new(),
                partitions: Vec::new(),
            },
        );
        assert_eq!(metadata.fit_to_shards(2), 2);
        assert!(metadata.topics["a"].shards.iter().all(|&shard| shard < 2));
        assert_eq!(metadata.fit_to_shards(2), 0);
    }

    #[test]
    fn persist_keeps_the_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let mut metadata = ClusterMetadata::load_or_create(dir.path()).unwrap();
        assert!(!dir.path().join(PREVIOUS_METADATA_FILE).exists());
        let first = metadata.clone();
        metadata.next_producer_id = 5;
        metadata.persist(dir.path()).unwrap();
        let previous = ClusterMetadata::load_file(&dir.path().join(PREVIOUS_METADATA_FILE))
            .unwrap()
            .unwrap();
        assert_eq!(previous, first);
        metadata.next_producer_id = 6;
        metadata.persist(dir.path()).unwrap();
        let previous = ClusterMetadata::load_file(&dir.path().join(PREVIOUS_METADATA_FILE))
            .unwrap()
            .unwrap();
        assert_eq!(previous.next_producer_id, 5);
        let current = ClusterMetadata::load_or_create(dir.path()).unwrap();
        assert_eq!(current.next_producer_id, 6);
    }

    #[test]
    fn partition_states_are_not_written_and_forgotten_leaders_serve_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut metadata = ClusterMetadata::load_or_create(dir.path()).unwrap();
        metadata.quorum_managed = true;
        metadata.node_id = 1;
        let state = PartitionState {
            replicas: vec![1, 2],
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
            isr: vec![1],
            leader: 1,
            leader_epoch: 4,
            partition_epoch: 5,
        };
        metadata.topics.insert(
            "t".into(),
            TopicMetadata {
                id: Uuid::new_v4(),
                shards: vec![0],
                configs: BTreeMap::new(),
                partitions: vec![state.clone()],
            },
        );
        let mut moved = metadata.clone();
        moved.topics.get_mut("t").unwrap().partitions[0].leader = 2;
        assert!(
            !moved.persisted_differs(&metadata),
            "a leader change is not written"
        );
        metadata.persist(dir.path()).unwrap();
        let mut reloaded = ClusterMetadata::load_or_create(dir.path()).unwrap();
        assert!(reloaded.topics["t"].partitions.is_empty());
        reloaded.node_id = 1;
        assert_eq!(
            reloaded.route("t", 0),
            Ok(0),
            "led here until told otherwise"
        );
        reloaded.forget_leaders();
        assert_eq!(
            reloaded.route("t", 0),
            Err(NotServed::NotLeader {
                leader: -1,
                leader_epoch: 0
            })
        );
    }

    #[test]
    fn persists_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let mut metadata = ClusterMetadata::load_or_create(dir.path()).unwrap();
        let mut configs = BTreeMap::new();
        configs.insert("segment.bytes".to_string(), "1000".to_string());
        metadata.topics.insert(
            "t".into(),
            TopicMetadata {
                id: Uuid::new_v4(),
                shards: vec![1, 0],
                configs,
                partitions: Vec::new(),
            },
        );
        metadata.next_producer_id = 7;
        metadata.persist(dir.path()).unwrap();
        let reloaded = ClusterMetadata::load_or_create(dir.path()).unwrap();
        assert_eq!(reloaded, metadata);
        assert_eq!(reloaded.cluster_id.len(), 22);
    }

    #[test]
    fn dynamic_broker_configs_persist_and_old_files_load_without_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut metadata = ClusterMetadata::load_or_create(dir.path()).unwrap();
        metadata
            .broker_default_configs
            .insert("log.retention.ms".into(), "3600000".into());
        metadata
            .broker_configs
            .insert("log.cleaner.backoff.ms".into(), "1000".into());
        metadata.persist(dir.path()).unwrap();
        assert_eq!(
            ClusterMetadata::load_or_create(dir.path()).unwrap(),
            metadata
        );
        let old = "cluster_id = \"abc\"\nnext_producer_id = 3\n[topics.t]\nid = \"6f1c2d3e-1111-4222-8333-944455556666\"\nshards = [0]\n";
        std::fs::write(dir.path().join(METADATA_FILE), old).unwrap();
        let loaded = ClusterMetadata::load_or_create(dir.path()).unwrap();
        assert!(loaded.broker_default_configs.is_empty() && loaded.broker_configs.is_empty());
        assert_eq!(loaded.topics.len(), 1);
    }
}
