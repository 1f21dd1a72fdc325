//! Internal topics: the topics a coordinator keeps its own state in (Kafka's `Topic.INTERNAL_TOPICS`).
//!
//! The core (produce, the control plane, start-up) asks this registry whether a topic is internal and
//! what shape it must have; it never names one. There are two: `__consumer_offsets` (the group
//! coordinator's) and `__transaction_state` (the transaction coordinator's).
//!
//! Rules for an internal topic, as in Kafka: clients cannot produce to it (the coordinator appends
//! through its partition directly), delete it, or add partitions to it (its partition count places
//! every group); whoever creates it gets the registry's shape, whatever the request said.

use crate::config::{BrokerConfig, GroupConfig, TransactionConfig};
use std::collections::BTreeMap;

/// The internal topic holding group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The internal topic holding transactional ids and their transactions' states.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// The metadata quorum's topic (Kafka's `__cluster_metadata`): not a topic clients see or create; its
/// one partition's log lives in the data directory as `__cluster_metadata-0`, so no topic may take the
/// name (see `partition_dir::CLUSTER_METADATA_LOG_DIR`).
pub const CLUSTER_METADATA_TOPIC: &str = "__cluster_metadata";

/// Whether `name` is an internal topic.
pub fn is_internal(name: &str) -> bool {
    name == OFFSETS_TOPIC || name == TRANSACTION_STATE_TOPIC
}

/// The partition count an internal topic is created with.
pub fn partition_count(name: &str, config: &BrokerConfig) -> Option<i32> {
    match name {
        OFFSETS_TOPIC => Some(config.groups.offsets_topic_partitions),
        TRANSACTION_STATE_TOPIC => Some(config.transactions.state_log_partitions),
        _ => None,
    }
}

/// The topic configs an internal topic is created with under the broker's settings: both are
/// compacted, `__consumer_offsets` with `offsets.topic.segment.bytes` segments, `__transaction_state`
/// with `transaction.state.log.segment.bytes` ones.
pub fn topic_configs_for_broker(
    name: &str,
    config: &BrokerConfig,
) -> Option<BTreeMap<String, String>> {
    match name {
        TRANSACTION_STATE_TOPIC => Some(transaction_state_configs(&config.transactions)),
        _ => topic_configs_for(name, &config.groups),
    }
}

fn transaction_state_configs(transactions: &TransactionConfig) -> BTreeMap<String, String> {
    let mut configs = BTreeMap::new();
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    configs.insert(
        "segment.bytes".to_string(),
        transactions.state_log_segment_bytes.to_string(),
    );
    configs
}

/// The topic configs an internal topic is created with, as Kafka's defaults have them:
/// `__consumer_offsets` is compacted (group metadata and offsets are keyed; removals are tombstones),
/// with 100 MiB segments (the default `offsets.topic.segment.bytes`). Where the broker's configuration
/// is at hand, [`topic_configs_for`] applies it.
pub fn topic_configs(name: &str) -> Option<BTreeMap<String, String>> {
    if name == TRANSACTION_STATE_TOPIC {
        return Some(transaction_state_configs(&TransactionConfig::default()));
    }
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

    #[test]
    fn the_transaction_state_topic_is_internal_and_compacted() {
        assert!(is_internal(TRANSACTION_STATE_TOPIC));
        assert!(!is_internal("orders"));
        let defaults = topic_configs(TRANSACTION_STATE_TOPIC).unwrap();
        assert_eq!(defaults["cleanup.policy"], "compact");
        assert_eq!(defaults["segment.bytes"], "104857600");
        let mut config = crate::config::BrokerConfig::from_cli(crate::config::Cli {
            data_dir: Some(std::env::temp_dir()),
            shards: Some(1),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(partition_count(TRANSACTION_STATE_TOPIC, &config), Some(50));
        config.transactions.state_log_partitions = 3;
        config.transactions.state_log_segment_bytes = 8192;
        assert_eq!(partition_count(TRANSACTION_STATE_TOPIC, &config), Some(3));
        assert_eq!(
            topic_configs_for_broker(TRANSACTION_STATE_TOPIC, &config).unwrap()["segment.bytes"],
            "8192"
        );
        assert_eq!(
            topic_configs_for_broker(OFFSETS_TOPIC, &config).unwrap()["segment.bytes"],
            "104857600"
        );
        assert!(topic_configs_for_broker("orders", &config).is_none());
    }
}
