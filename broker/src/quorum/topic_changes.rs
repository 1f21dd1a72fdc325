//! The records that describe a change of topics: the difference between two versions of a topic
//! (created, removed, grown, its configs changed), as the control plane proposes it
//! (`control::quorum_changes`) and the migration of a broker's own topics does (`migration`).

use super::records::{ConfigTarget, MetadataRecord};
use crate::metadata::TopicMetadata;
use std::collections::BTreeMap;

/// The records that turn topic `name` from `old` into `new` (`None`: absent): a new topic with its
/// partitions, a removal, added partitions, changed configs.
pub fn topic_records(
    name: &str,
    old: Option<&TopicMetadata>,
    new: Option<&TopicMetadata>,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    match (old, new) {
        (Some(old), new) if new.is_none_or(|new| new.id != old.id) => {
            records.push(MetadataRecord::RemoveTopic { topic_id: old.id });
        }
        _ => {}
    }
    let Some(new) = new else {
        return records;
    };
    let existing = match old {
        Some(old) if old.id == new.id => {
            records.extend(config_records(
                ConfigTarget::Topic(name.to_string()),
                &old.configs,
                &new.configs,
            ));
            old.partitions.len()
        }
        _ => {
            records.push(MetadataRecord::Topic {
                topic_id: new.id,
                name: name.to_string(),
                configs: new
                    .configs
                    .iter()
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect(),
            });
            0
        }
    };
    for (index, state) in new.partitions.iter().enumerate().skip(existing) {
        records.push(MetadataRecord::Partition {
            topic_id: new.id,
            partition: index as i32,
            replicas: state.replicas.clone(),
            isr: state.isr.clone(),
            leader: state.leader,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
        });
    }
    records
}

/// `Config` records turning `old` into `new`.
pub fn config_records(
    target: ConfigTarget,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<MetadataRecord> {
    let removed = old
        .keys()
        .filter(|name| !new.contains_key(*name))
        .map(|name| MetadataRecord::Config {
            target: target.clone(),
            name: name.clone(),
            value: None,
        });
    let set = new
        .iter()
        .filter(|(name, value)| old.get(*name) != Some(value))
        .map(|(name, value)| MetadataRecord::Config {
            target: target.clone(),
            name: name.clone(),
            value: Some(value.clone()),
        });
    removed.chain(set).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::ClusterMetadata;
    use crate::metadata::{PartitionState, TopicMetadata};
    use uuid::Uuid;

    fn partition(leader: i32) -> PartitionState {
        PartitionState {
            replicas: vec![leader, leader + 1],
            isr: vec![leader],
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    fn with_topic(partitions: usize, configs: &[(&str, &str)]) -> (ClusterMetadata, Uuid) {
        let mut metadata = ClusterMetadata::new_cluster();
        let id = Uuid::new_v4();
        metadata.topics.insert(
            "orders".into(),
            TopicMetadata {
                id,
                shards: vec![0; partitions],
                configs: configs
                    .iter()
                    .map(|(key, value)| (key.to_string(), value.to_string()))
                    .collect(),
                partitions: (0..partitions as i32).map(partition).collect(),
            },
        );
        (metadata, id)
    }

    #[test]
    fn a_new_topic_is_its_record_then_its_partitions() {
        let before = ClusterMetadata::new_cluster();
        let (after, id) = with_topic(2, &[("retention.ms", "5")]);
        let records = topic_records(
            "orders",
            before.topics.get("orders"),
            after.topics.get("orders"),
        );
        assert_eq!(records.len(), 3);
        assert_eq!(
            records[0],
            MetadataRecord::Topic {
                topic_id: id,
                name: "orders".into(),
                configs: vec![("retention.ms".into(), "5".into())],
            }
        );
        assert!(matches!(
            &records[2],
            MetadataRecord::Partition { partition: 1, leader: 1, replicas, .. } if replicas == &vec![1, 2]
        ));
    }

    #[test]
    fn deletion_growth_and_config_changes() {
        let (before, id) = with_topic(1, &[("retention.ms", "5"), ("segment.bytes", "4096")]);
        let after = ClusterMetadata::new_cluster();
        assert_eq!(
            topic_records(
                "orders",
                before.topics.get("orders"),
                after.topics.get("orders")
            ),
            vec![MetadataRecord::RemoveTopic { topic_id: id }]
        );
        let mut after = before.clone();
        let topic = after.topics.get_mut("orders").unwrap();
        topic.partitions.push(partition(2));
        topic.shards.push(0);
        topic.configs.remove("segment.bytes");
        topic.configs.insert("retention.ms".into(), "6".into());
        let records = topic_records(
            "orders",
            before.topics.get("orders"),
            after.topics.get("orders"),
        );
        assert_eq!(
            records,
            vec![
                MetadataRecord::Config {
                    target: ConfigTarget::Topic("orders".into()),
                    name: "segment.bytes".into(),
                    value: None
                },
                MetadataRecord::Config {
                    target: ConfigTarget::Topic("orders".into()),
                    name: "retention.ms".into(),
                    value: Some("6".into())
                },
                MetadataRecord::Partition {
                    topic_id: id,
                    partition: 1,
                    replicas: vec![2, 3],
                    isr: vec![2],
                    leader: 2,
                    leader_epoch: 0,
                    partition_epoch: 0,
                },
            ]
        );
        assert!(topic_records(
            "orders",
            before.topics.get("orders"),
            before.topics.get("orders")
        )
        .is_empty());
    }
}
