//! Publishes the metadata quorum's image to every shard: when the image changes (the cluster id is
//! committed, a broker registers or is fenced, topics, partitions, leaders or configs change) or the
//! quorum's leader changes, the control plane makes a new metadata version from it and broadcasts it
//! like any other change (under the control lock, so versions stay in order).
//!
//! Until the image holds this cluster's topics (`topics_migrated`), only the brokers, the cluster id and
//! the controller are taken from it; the topics stay this node's own. From then on the topics, their
//! partitions' replicas and leaders, and the dynamic broker defaults are the image's; only the placement
//! of partitions on this node's shards is local (kept for partitions already placed). The result is
//! persisted in `cluster_metadata.toml` whenever what it holds changes (not the partitions' leaders: the
//! quorum's log has them), so a restart serves the same topics before the quorum has caught up (a
//! cluster of one, which leads them all) or after (a larger one: see `main`).

use super::broadcast;
use crate::metadata::{BrokerEndpoint, ClusterMetadata, TopicMetadata};
use crate::partition::manager::UnopenedPartition;
use crate::quorum::image::MetadataImage;
use crate::quorum::Quorum;
use crate::shard_state::ShardState;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;

/// Runs until the shard is gone or shutting down. A publication that could not be written is tried
/// again a second later (or at the next change).
pub async fn run(state: Weak<ShardState>, quorum: Rc<Quorum>) {
    loop {
        let changed = quorum.changed.listen();
        let failed = {
            let Some(state) = state.upgrade().filter(|state| !state.shutting_down.get()) else {
                return;
            };
            let _serialized = state.control_lock.lock().await;
            publish_locked(&state, &quorum).await.is_err()
        };
        if failed {
            shard::task::timeout(RETRY, changed).await;
        } else {
            changed.await;
        }
    }
}

/// How long after a failed publication it is tried again.
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Publishes the image if the metadata it makes differs from the current one; the caller holds the
/// control lock. Returns the partitions a shard could not open, or why nothing was published: the
/// metadata file could not be written (then nothing changes on the shards, so no directory is created
/// or deleted that the file does not account for).
pub async fn publish_locked(
    state: &Rc<ShardState>,
    quorum: &Quorum,
) -> Result<Vec<UnopenedPartition>, std::io::Error> {
    let controller = quorum.status.borrow().leader_id;
    let current = state.metadata();
    // The image is not held across the broadcast, so the Ready loop keeps changing it in place.
    let mut next = derive(
        &current,
        &quorum.image.borrow(),
        state.config.shards,
        controller,
    );
    // Nothing to publish when only the applied index moved.
    next.version = current.version;
    let applied_index = std::mem::replace(&mut next.applied_index, current.applied_index);
    if next == *current {
        return Ok(Vec::new());
    }
    next.applied_index = applied_index;
    if next.cluster_id != current.cluster_id {
        tracing::info!(from = %current.cluster_id, to = %next.cluster_id, "adopting the quorum's cluster id");
    }
    if !current.quorum_managed && next.quorum_managed {
        next.dropped_topics = current
            .topics
            .iter()
            .filter(|(name, topic)| next.topics.get(*name).is_none_or(|now| now.id != topic.id))
            .map(|(_, topic)| topic.id)
            .collect();
        tracing::info!(
            topics = next.topics.len(),
            "the metadata quorum manages the topics from now on"
        );
        if !next.dropped_topics.is_empty() {
            tracing::warn!(
                count = next.dropped_topics.len(),
                "topics of this node that the cluster's metadata log does not hold (another node's \
                 topics were migrated) are no longer served; their directories are kept aside (-stray)"
            );
        }
    }
    next.version = current.version + 1;
    // Leadership changes alone are not written: the file keeps what is this node's (placement) and
    // what a restart before the quorum caught up needs (topics, configs).
    if next.persisted_differs(&current) {
        if let Err(error) = next.persist(&state.config.data_dir) {
            tracing::error!(%error, "cannot persist metadata; the quorum's image is not published");
            return Err(error);
        }
    }
    Ok(broadcast(state, Arc::new(next)).await)
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
    next.dropped_topics.clear();
    // Not an image older than the one the topics were last taken from (a start replays what this node
    // knew committed, which may be less): its topics wait until it catches up.
    if !image.topics_migrated || image.applied_index < current.applied_index {
        return next;
    }
    next.quorum_managed = true;
    next.applied_index = image.applied_index;
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
                partitions: topic.partitions.clone(),
            },
        );
    }
    next.topics = topics;
    // Partitions new to this node go to its least-loaded shards (one count of the load, so that many
    // new topics, as at a first start from a large log, cost what they hold).
    let missing: usize = next
        .topics
        .values()
        .map(|topic| topic.partitions.len() - topic.shards.len())
        .sum();
    if missing > 0 {
        let mut placed = next.place_partitions(shards, missing).into_iter();
        for topic in next.topics.values_mut() {
            let wanted = topic.partitions.len() - topic.shards.len();
            topic.shards.extend(placed.by_ref().take(wanted));
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::image::{PartitionImage, TopicImage};
    use uuid::Uuid;

    fn image_with(topic_id: Uuid, partitions: usize, migrated: bool) -> MetadataImage {
        let mut image = MetadataImage::default();
        image.topics_migrated = migrated;
        image.cluster_id = Some("q1Xk9-abc_DEF".into());
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
                        adding_replicas: Vec::new(),
                        removing_replicas: Vec::new(),
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

    #[test]
    fn topics_are_not_taken_from_an_image_older_than_the_file() {
        let id = Uuid::new_v4();
        let mut current = ClusterMetadata::new_cluster();
        current.quorum_managed = true;
        current.applied_index = 50;
        current.topics.insert(
            "orders".into(),
            TopicMetadata {
                id,
                shards: vec![0, 0, 0],
                configs: BTreeMap::new(),
                partitions: Vec::new(),
            },
        );
        // A start replayed the log only up to index 10: its image lacks what came after.
        let mut image = image_with(Uuid::new_v4(), 1, true);
        image.skip(10);
        let next = derive(&current, &image, 1, None);
        assert_eq!(next.topics, current.topics);
        assert_eq!(next.applied_index, 50);
        image.skip(50);
        let next = derive(&current, &image, 1, None);
        assert_ne!(next.topics["orders"].id, id);
        assert_eq!(next.applied_index, 50);
    }
}
