//! Publishes the metadata quorum's image to every shard: when the image changes (the cluster id is
//! committed, a broker registers or is fenced, topics, partitions, leaders or configs change) or the
//! quorum's leader changes, the control plane makes a new metadata version from it and broadcasts it
//! like any other change (under the control lock, so versions stay in order).
//!
//! Until the image holds this cluster's topics (`topics_migrated`), only the brokers, the cluster id and
//! the controller are taken from it; the topics stay this node's own. From then on the topics, their
//! partitions' replicas and leaders, and the dynamic broker defaults are the image's; only the placement
//! of partitions on this node's shards is local (kept for partitions already placed). The result is
//! persisted in `cluster_metadata.toml` whenever what it holds changes, so a restart serves the same
//! topics before the quorum has caught up (a cluster of one) or after (a larger one: see `main`).

use super::broadcast;
use crate::metadata::{BrokerEndpoint, ClusterMetadata, PartitionState, TopicMetadata};
use crate::partition::manager::UnopenedPartition;
use crate::quorum::image::MetadataImage;
use crate::quorum::Quorum;
use crate::shard_state::ShardState;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;

/// Runs until the shard is gone or shutting down.
pub async fn run(state: Weak<ShardState>, quorum: Rc<Quorum>) {
    loop {
        let changed = quorum.changed.listen();
        {
            let Some(state) = state.upgrade().filter(|state| !state.shutting_down.get()) else {
                return;
            };
            let _serialized = state.control_lock.lock().await;
            publish_locked(&state, &quorum).await;
        }
        changed.await;
    }
}

/// Publishes the image if the metadata it makes differs from the current one; the caller holds the
/// control lock. Returns the partitions a shard could not open.
pub async fn publish_locked(state: &Rc<ShardState>, quorum: &Quorum) -> Vec<UnopenedPartition> {
    let image = quorum.image.borrow().clone();
    let controller = quorum.status.borrow().leader_id;
    let current = state.metadata();
    let mut next = derive(&current, &image, state.config.shards, controller);
    next.version = current.version;
    if next == *current {
        return Vec::new();
    }
    if next.cluster_id != current.cluster_id {
        tracing::info!(from = %current.cluster_id, to = %next.cluster_id, "adopting the quorum's cluster id");
    }
    if !current.quorum_managed && next.quorum_managed {
        let dropped: Vec<&String> = current
            .topics
            .iter()
            .filter(|(name, topic)| next.topics.get(*name).is_none_or(|now| now.id != topic.id))
            .map(|(name, _)| name)
            .collect();
        tracing::info!(
            topics = next.topics.len(),
            "the metadata quorum manages the topics from now on"
        );
        if !dropped.is_empty() {
            tracing::warn!(?dropped, "topics of this node that the cluster's metadata log does not hold are dropped (another node's topics were migrated)");
        }
    }
    next.version = current.version + 1;
    let persisted_changed = next.cluster_id != current.cluster_id
        || next.quorum_managed != current.quorum_managed
        || next.topics != current.topics
        || next.broker_default_configs != current.broker_default_configs;
    if persisted_changed {
        if let Err(error) = next.persist(&state.config.data_dir) {
            tracing::error!(%error, "cannot persist metadata");
        }
    }
    broadcast(state, Arc::new(next)).await
}

/// The metadata `image` describes, for this node, from `current`.
pub fn derive(
    current: &ClusterMetadata,
    image: &MetadataImage,
    shards: usize,
    controller: Option<i32>,
) -> ClusterMetadata {
    let mut next = current.clone();
    next.brokers = image
        .live_brokers()
        .map(|broker| BrokerEndpoint {
            node_id: broker.node_id,
            host: broker.host.clone(),
            port: broker.port,
            rack: broker.rack.clone(),
        })
        .collect();
    if let Some(cluster_id) = &image.cluster_id {
        next.cluster_id = cluster_id.clone();
    }
    next.controller_id = controller;
    if !image.topics_migrated {
        return next;
    }
    next.quorum_managed = true;
    next.broker_default_configs = image.broker_default_configs.clone();
    let mut topics = BTreeMap::new();
    for (name, topic) in &image.topics {
        let kept: Vec<usize> = current
            .topics
            .get(name)
            .filter(|local| local.id == topic.id)
            .map(|local| {
                let mut kept = local.shards.clone();
                kept.truncate(topic.partitions.len());
                kept
            })
            .unwrap_or_default();
        topics.insert(
            name.clone(),
            TopicMetadata {
                id: topic.id,
                shards: kept,
                configs: topic.configs.clone(),
                partitions: topic
                    .partitions
                    .iter()
                    .map(|partition| PartitionState {
                        replicas: partition.replicas.clone(),
                        isr: partition.isr.clone(),
                        leader: partition.leader,
                        leader_epoch: partition.leader_epoch,
                        partition_epoch: partition.partition_epoch,
                    })
                    .collect(),
            },
        );
    }
    next.topics = topics;
    // Partitions new to this node go to its least-loaded shards.
    let unplaced: Vec<(String, usize)> = next
        .topics
        .iter()
        .filter(|(_, topic)| topic.shards.len() < topic.partitions.len())
        .map(|(name, topic)| (name.clone(), topic.partitions.len() - topic.shards.len()))
        .collect();
    for (name, missing) in unplaced {
        let placed = next.place_partitions(shards, missing);
        next.topics
            .get_mut(&name)
            .expect("listed above")
            .shards
            .extend(placed);
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::image::{PartitionImage, TopicImage};
    use uuid::Uuid;

    fn image_with(topic_id: Uuid, partitions: usize, migrated: bool) -> MetadataImage {
        let mut image = MetadataImage {
            topics_migrated: migrated,
            cluster_id: Some("q1Xk9-abc_DEF".into()),
            ..MetadataImage::default()
        };
        image.topics.insert(
            "orders".into(),
            TopicImage {
                id: topic_id,
                configs: BTreeMap::new(),
                partitions: (0..partitions as i32)
                    .map(|index| PartitionImage {
                        replicas: vec![index % 2, 2],
                        isr: vec![index % 2],
                        leader: index % 2,
                        leader_epoch: 3,
                        partition_epoch: 4,
                    })
                    .collect(),
            },
        );
        image
    }

    #[test]
    fn before_the_migration_only_brokers_and_the_cluster_id_are_taken() {
        let mut current = ClusterMetadata::new_cluster();
        current.topics.insert(
            "local".into(),
            TopicMetadata {
                id: Uuid::new_v4(),
                shards: vec![0],
                configs: BTreeMap::new(),
                partitions: Vec::new(),
            },
        );
        let next = derive(&current, &image_with(Uuid::new_v4(), 2, false), 2, Some(1));
        assert_eq!(next.topics, current.topics);
        assert!(!next.quorum_managed);
        assert_eq!(next.cluster_id, "q1Xk9-abc_DEF");
        assert_eq!(next.controller_id, Some(1));
    }

    #[test]
    fn topics_come_from_the_image_and_keep_their_shards() {
        let id = Uuid::new_v4();
        let mut current = ClusterMetadata::new_cluster();
        current.node_id = 1;
        current.topics.insert(
            "orders".into(),
            TopicMetadata {
                id,
                shards: vec![1, 1],
                configs: BTreeMap::new(),
                partitions: Vec::new(),
            },
        );
        let next = derive(&current, &image_with(id, 4, true), 2, None);
        assert!(next.quorum_managed);
        let topic = &next.topics["orders"];
        assert_eq!(&topic.shards[..2], &[1, 1], "placed partitions stay");
        assert_eq!(topic.shards.len(), 4);
        assert_eq!(topic.partitions[3].leader, 1);
        assert_eq!(topic.partitions[3].leader_epoch, 3);
        // Node 1 serves the partitions it leads, and points elsewhere for the others.
        assert_eq!(next.route("orders", 1), Ok(1));
        assert_eq!(
            next.route("orders", 0),
            Err(crate::metadata::NotServed::NotLeader {
                leader: 0,
                leader_epoch: 3
            })
        );
        // The same name with another id is another topic: placed afresh.
        let next = derive(&current, &image_with(Uuid::new_v4(), 1, true), 2, None);
        assert_eq!(
            next.topics["orders"].shards,
            vec![0],
            "not the old topic's shard 1"
        );
    }
}
