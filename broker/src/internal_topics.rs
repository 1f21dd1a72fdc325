//! Internal topics: the topics a coordinator keeps its own state in (Kafka's `Topic.INTERNAL_TOPICS`).
//!
//! The core (produce, the control plane, start-up) asks this registry whether a topic is internal and
//! what shape it must have; it never names one. Today there is one, `__consumer_offsets` (the group
//! coordinator's); `__transaction_state` joins it with transactions.
//!
//! Rules for an internal topic, as in Kafka: clients cannot produce to it (the coordinator appends
//! through its partition directly), delete it, or add partitions to it (its partition count places
//! every group); whoever creates it gets the registry's shape, whatever the request said.

use crate::config::{BrokerConfig, GroupConfig};
use std::collections::BTreeMap;

/// The internal topic holding group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Whether `name` is an internal topic.
pub fn is_internal(name: &str) -> bool {
    name == OFFSETS_TOPIC
}

/// The partition count an internal topic is created with.
pub fn partition_count(name: &str, config: &BrokerConfig) -> Option<i32> {
    (name == OFFSETS_TOPIC).then_some(config.groups.offsets_topic_partitions)
}

/// The topic configs an internal topic is created with, as Kafka's defaults have them:
/// `__consumer_offsets` is compacted (group metadata and offsets are keyed; removals are tombstones),
/// with 100 MiB segments (the default `offsets.topic.segment.bytes`). Where the broker's configuration
/// is at hand, [`topic_configs_for`] applies it.
pub fn topic_configs(name: &str) -> Option<BTreeMap<String, String>> {
    topic_configs_for(name, &GroupConfig::default())
}

/// The topic configs an internal topic is created with under the group settings `groups`: for
/// `__consumer_offsets`, `cleanup.policy=compact` and `segment.bytes` = `offsets.topic.segment.bytes`.
pub fn topic_configs_for(name: &str, groups: &GroupConfig) -> Option<BTreeMap<String, String>> {
    if name != OFFSETS_TOPIC {
        return None;
    }
    let mut configs = BTreeMap::new();
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    configs.insert(
        "segment.bytes".to_string(),
        groups.offsets_topic_segment_bytes.to_string(),
    );
    Some(configs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offsets_topic_is_compacted_with_the_configured_segment_size() {
        let defaults = topic_configs(OFFSETS_TOPIC).unwrap();
        assert_eq!(defaults["cleanup.policy"], "compact");
        assert_eq!(defaults["segment.bytes"], "104857600");
        let groups = GroupConfig {
            offsets_topic_segment_bytes: 4096,
            ..GroupConfig::default()
        };
        assert_eq!(
            topic_configs_for(OFFSETS_TOPIC, &groups).unwrap()["segment.bytes"],
            "4096"
        );
        assert!(topic_configs_for("orders", &groups).is_none());
    }
}
