//! Internal topics: the topics a coordinator keeps its own state in (Kafka's `Topic.INTERNAL_TOPICS`).
//!
//! The core (produce, the control plane, start-up) asks this registry whether a topic is internal and
//! what shape it must have; it never names one. Today there is one, `__consumer_offsets` (the group
//! coordinator's); `__transaction_state` joins it with transactions.
//!
//! Rules for an internal topic, as in Kafka: clients cannot produce to it (the coordinator appends
//! through its partition directly), delete it, or add partitions to it (its partition count places
//! every group); whoever creates it gets the registry's shape, whatever the request said.

use crate::config::BrokerConfig;
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

/// The topic configs an internal topic is created with: `__consumer_offsets` is compacted, with
/// 100 MiB segments (Kafka's `offsets.topic.segment.bytes`).
pub fn topic_configs(name: &str) -> Option<BTreeMap<String, String>> {
    if name != OFFSETS_TOPIC {
        return None;
    }
    let mut configs = BTreeMap::new();
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    configs.insert("segment.bytes".to_string(), (100u64 << 20).to_string());
    Some(configs)
}
