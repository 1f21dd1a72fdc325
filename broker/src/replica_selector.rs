//! Fetch from follower (KIP-392), the leader's choice: which replica a consumer should read a
//! partition from, per the broker setting `replica_selector` (Kafka's `replica.selector.class`).
//!
//! - `leader` (the default, as Kafka without a selector): always the leader.
//! - `rack-aware` (Kafka's `RackAwareReplicaSelector`): a consumer that names its rack (Fetch v11+
//!   `rack_id`, the client's `client.rack`) is sent to a replica in that rack. The leader is
//!   preferred when it is in the consumer's rack (or the consumer names none); otherwise the
//!   candidates are the partition's followers that are in the ISR and registered, live, in that
//!   rack. The partition's leader then keeps those that have fetched past the consumer's offset and
//!   picks the most caught up (`Partition::preferred_read_replica`), answering its id as
//!   `preferred_read_replica` without records; the consumer fetches from it until it errs (e.g.
//!   OFFSET_OUT_OF_RANGE) or its metadata changes, then asks the leader again.
//!
//! Followers' own fetches (a replica id) are never redirected.

use crate::config::{BrokerConfig, ReplicaSelector};
use crate::metadata::ClusterMetadata;

/// The followers this leader may send a consumer in `client_rack` to for `topic`/`partition`, in
/// replica order; empty when the consumer should read from the leader (selector `leader`, no client
/// rack, the leader in the client's rack, this node not leading, or no live in-sync follower there).
pub fn preferred_read_candidates(
    config: &BrokerConfig,
    metadata: &ClusterMetadata,
    topic: &str,
    partition: i32,
    client_rack: &str,
) -> Vec<i32> {
    if config.replica_selector != ReplicaSelector::RackAware
        || client_rack.is_empty()
        || config.rack.as_deref() == Some(client_rack)
    {
        return Vec::new();
    }
    let Some(state) = metadata
        .topics
        .get(topic)
        .and_then(|topic| topic.partitions.get(usize::try_from(partition).ok()?))
    else {
        return Vec::new();
    };
    if state.leader != metadata.node_id {
        return Vec::new();
    }
    state
        .replicas
        .iter()
        .copied()
        .filter(|&id| id != metadata.node_id && state.isr.contains(&id))
        .filter(|&id| {
            metadata
                .broker(id)
                .is_some_and(|broker| broker.rack.as_deref() == Some(client_rack))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cli;
    use crate::metadata::{BrokerEndpoint, PartitionState, TopicMetadata};

    fn config(selector: ReplicaSelector, rack: Option<&str>) -> BrokerConfig {
        let mut config = BrokerConfig::from_cli(Cli {
            data_dir: Some(std::env::temp_dir()),
            ..Cli::default()
        })
        .expect("valid configuration");
        config.node_id = 1;
        config.rack = rack.map(str::to_string);
        config.replica_selector = selector;
        config
    }

    /// Node 1 leads "t"/0 with replicas 1, 2, 3, 4; racks r1, r2, r2, r3 (node 4 fenced: not listed).
    fn metadata(isr: &[i32], leader: i32) -> ClusterMetadata {
        let mut metadata = ClusterMetadata::new_cluster();
        metadata.node_id = 1;
        metadata.brokers = [(1, "r1"), (2, "r2"), (3, "r2")]
            .into_iter()
            .map(|(node_id, rack)| BrokerEndpoint {
                node_id,
                host: "localhost".into(),
                port: 9092,
                rack: Some(rack.into()),
            })
            .collect();
        metadata.topics.insert(
            "t".into(),
            TopicMetadata {
                id: uuid::Uuid::new_v4(),
                shards: vec![0],
                configs: Default::default(),
                partitions: vec![PartitionState {
                    replicas: vec![1, 3, 2, 4],
                    isr: isr.to_vec(),
                    leader,
                    leader_epoch: 1,
                    partition_epoch: 1,
                    adding_replicas: Vec::new(),
                    removing_replicas: Vec::new(),
                }],
            },
        );
        metadata
    }

    #[test]
    fn rack_aware_lists_the_in_sync_live_followers_of_the_clients_rack_in_replica_order() {
        let config = config(ReplicaSelector::RackAware, Some("r1"));
        let metadata = metadata(&[1, 2, 3, 4], 1);
        let candidates = |rack| preferred_read_candidates(&config, &metadata, "t", 0, rack);
        assert_eq!(candidates("r2"), vec![3, 2]);
        assert_eq!(candidates("r3"), Vec::<i32>::new(), "node 4 is not live");
        assert_eq!(candidates("r9"), Vec::<i32>::new(), "no replica there");
        assert_eq!(candidates(""), Vec::<i32>::new(), "no client rack");
        assert_eq!(candidates("r1"), Vec::<i32>::new(), "the leader's rack");
        assert!(preferred_read_candidates(&config, &metadata, "t", 1, "r2").is_empty());
        assert!(preferred_read_candidates(&config, &metadata, "u", 0, "r2").is_empty());
    }

    #[test]
    fn out_of_sync_followers_are_no_candidates_and_only_a_leader_selects() {
        let config = config(ReplicaSelector::RackAware, Some("r1"));
        let out_of_sync = metadata(&[1, 2], 1);
        assert_eq!(
            preferred_read_candidates(&config, &out_of_sync, "t", 0, "r2"),
            vec![2]
        );
        let not_leading = metadata(&[1, 2, 3], 2);
        assert!(preferred_read_candidates(&config, &not_leading, "t", 0, "r2").is_empty());
    }

    #[test]
    fn the_leader_selector_and_a_leader_without_a_rack() {
        let metadata = metadata(&[1, 2, 3], 1);
        let leader = config(ReplicaSelector::Leader, Some("r1"));
        assert!(preferred_read_candidates(&leader, &metadata, "t", 0, "r2").is_empty());
        let no_rack = config(ReplicaSelector::RackAware, None);
        assert_eq!(
            preferred_read_candidates(&no_rack, &metadata, "t", 0, "r2"),
            vec![3, 2]
        );
    }

    #[test]
    fn the_setting_accepts_kafkas_class_name() {
        assert_eq!(ReplicaSelector::parse("leader"), ReplicaSelector::Leader);
        assert_eq!(
            ReplicaSelector::parse("rack-aware"),
            ReplicaSelector::RackAware
        );
        assert_eq!(
            ReplicaSelector::parse(ReplicaSelector::RACK_AWARE_CLASS),
            ReplicaSelector::RackAware
        );
    }
}
