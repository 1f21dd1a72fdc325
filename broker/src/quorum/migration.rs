//! The migration of a broker's topics from before the metadata quorum carried them
//! (`cluster_metadata.toml`) into the metadata log, done once per cluster by the first leader that finds
//! the log without them: one batch per topic (the topic, its config overrides and its partitions, each
//! led by this node alone, where its data is), then a batch of the dynamic broker defaults and the
//! `TopicsMigrated` marker. A single broker upgraded in place keeps every topic, id and config.
//!
//! A topic the log already holds (by id, by name, or by a colliding name) is not proposed again: a
//! leader change halfway resumes the migration with the new leader's own topics, and the marker goes
//! once every topic is in or refused. Topics of nodes that never led before the marker are not migrated
//! (the control plane drops them with a warning).

use super::image::MetadataImage;
use super::records::{ConfigTarget, MetadataRecord};
use super::topic_changes::{config_records, topic_records};
use crate::metadata::{ClusterMetadata, PartitionState};

#[derive(Clone, Debug, Default)]
pub struct Migration {
    /// One batch per topic.
    pub topics: Vec<MetadataRecord>,
    /// The broker defaults and the marker, proposed last.
    pub finish: Option<MetadataRecord>,
}

impl Migration {
    /// The migration of `metadata`'s topics, for node `node_id`: nothing when they already come from
    /// the quorum (a log reset by hand is not re-filled from a cache).
    pub fn of(metadata: &ClusterMetadata, node_id: i32) -> Migration {
        if metadata.quorum_managed {
            return Migration::default();
        }
        let topics = metadata
            .topics
            .iter()
            .map(|(name, topic)| {
                // Led by this node alone, where its data is.
                let mut led_here = topic.clone();
                led_here.partitions = vec![
                    PartitionState {
                        replicas: vec![node_id],
                        isr: vec![node_id],
                        leader: node_id,
                        leader_epoch: 0,
                        partition_epoch: 0,
                        adding_replicas: Vec::new(),
                        removing_replicas: Vec::new(),
                    };
                    topic.shards.len()
                ];
                MetadataRecord::Batch(topic_records(name, None, Some(&led_here)))
            })
            .collect();
        let mut finish = config_records(
            ConfigTarget::BrokerDefault,
            &Default::default(),
            &metadata.broker_default_configs,
        );
        finish.push(MetadataRecord::TopicsMigrated);
        Migration {
            topics,
            finish: Some(MetadataRecord::Batch(finish)),
        }
    }

    /// What to propose next given `image`: the topic batches it does not hold yet, else the marker;
    /// nothing once it is migrated.
    pub fn next<'a>(&'a self, image: &MetadataImage) -> Vec<&'a MetadataRecord> {
        if image.topics_migrated {
            return Vec::new();
        }
        let pending: Vec<&MetadataRecord> = self
            .topics
            .iter()
            .filter(|batch| !settled(batch, image))
            .collect();
        if pending.is_empty() {
            self.finish.iter().collect()
        } else {
            pending
        }
    }
}

/// Whether the image holds the topic a batch creates, or a topic it would collide with.
fn settled(batch: &MetadataRecord, image: &MetadataImage) -> bool {
    match batch {
        MetadataRecord::Batch(records) => match records.first() {
            Some(MetadataRecord::Topic { topic_id, name, .. }) => {
                image.holds_topic(*topic_id, name)
            }
            _ => true,
        },
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::TopicMetadata;
    use uuid::Uuid;

    fn legacy() -> ClusterMetadata {
        let mut metadata = ClusterMetadata::new_cluster();
        for (name, partitions) in [("orders", 3), ("audit.log", 1)] {
            metadata.topics.insert(
                name.into(),
                TopicMetadata {
                    id: Uuid::new_v4(),
                    shards: vec![0; partitions],
                    configs: [("retention.ms".to_string(), "1000".to_string())].into(),
                    partitions: Vec::new(),
                },
            );
        }
        metadata
            .broker_default_configs
            .insert("log.retention.ms".into(), "5000".into());
        metadata
    }

    #[test]
    fn topics_then_the_marker_then_nothing() {
        let metadata = legacy();
        let migration = Migration::of(&metadata, 4);
        let mut image = MetadataImage::default();
        image.apply(
            1,
            &MetadataRecord::RegisterBroker {
                node_id: 4,
                incarnation: 1,
                host: "127.0.0.1".into(),
                port: 9092,
                rack: None,
            },
        );
        let mut index = 1;
        let first = migration.next(&image);
        assert_eq!(first.len(), 2);
        for batch in first.into_iter().cloned().collect::<Vec<_>>() {
            index += 1;
            assert_eq!(
                image.apply(index, &batch),
                crate::quorum::image::Change::Topics
            );
        }
        assert_eq!(image.topics["orders"].partitions.len(), 3);
        assert_eq!(image.topics["orders"].partitions[2].leader, 4);
        assert_eq!(image.topics["orders"].id, metadata.topics["orders"].id);
        let finish = migration.next(&image);
        assert_eq!(finish.len(), 1);
        index += 1;
        image.apply(index, finish[0]);
        assert!(image.topics_migrated);
        assert_eq!(image.broker_default_configs["log.retention.ms"], "5000");
        assert!(migration.next(&image).is_empty());
    }

    #[test]
    fn a_colliding_topic_counts_as_settled() {
        let mut metadata = legacy();
        let migration = Migration::of(&metadata, 1);
        // Another leader migrated "audit_log" first.
        metadata.topics.clear();
        metadata.topics.insert(
            "audit_log".into(),
            TopicMetadata {
                id: Uuid::new_v4(),
                shards: vec![0],
                configs: Default::default(),
                partitions: Vec::new(),
            },
        );
        let mut image = MetadataImage::default();
        for (index, batch) in Migration::of(&metadata, 2).topics.iter().enumerate() {
            image.apply(index as u64 + 1, batch);
        }
        let next = migration.next(&image);
        assert_eq!(next.len(), 1, "only orders is left");
    }
}
