//! The metadata image: the state the committed metadata log describes, built by applying its records in
//! log order. Every node applies the same records in the same order, so every node's image is the same
//! at the same applied index; a record that does not fit (a second cluster id, a fence of an older
//! registration) is ignored the same way everywhere.

use super::records::MetadataRecord;
use std::collections::BTreeMap;
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
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicImage {
    pub id: Uuid,
    pub configs: BTreeMap<String, String>,
    /// By partition index.
    pub partitions: Vec<PartitionImage>,
}

/// One partition's replicas and leadership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionImage {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// -1: no leader (every in-sync replica is fenced).
    pub leader: i32,
    /// Bumped whenever the leader changes.
    pub leader_epoch: i32,
    /// Bumped on every change of the partition.
    pub partition_epoch: i32,
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
    pub fn apply(&mut self, index: u64, record: &MetadataRecord) -> Change {
        debug_assert!(index > self.applied_index, "entries applied out of order");
        self.applied_index = index;
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
                Change::Brokers
            }
            MetadataRecord::FenceBroker { node_id, epoch }
            | MetadataRecord::UnfenceBroker { node_id, epoch } => {
                let fence = matches!(record, MetadataRecord::FenceBroker { .. });
                match self.brokers.get_mut(node_id) {
                    // Only the registration it names: a broker that registered again since is another.
                    Some(broker) if broker.epoch == *epoch && broker.fenced != fence => {
                        broker.fenced = fence;
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
            _ => todo!("topic records"),
        }
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
mod tests {
    use super::*;

    fn register(node_id: i32, incarnation: u64) -> MetadataRecord {
        MetadataRecord::RegisterBroker {
            node_id,
            incarnation,
            host: "127.0.0.1".into(),
            port: 9000 + node_id as u16,
            rack: None,
        }
    }

    #[test]
    fn the_first_cluster_id_wins() {
        let mut image = MetadataImage::default();
        let first = MetadataRecord::ClusterId {
            cluster_id: "first".into(),
        };
        let second = MetadataRecord::ClusterId {
            cluster_id: "second".into(),
        };
        assert_eq!(image.apply(1, &first), Change::ClusterId);
        assert_eq!(image.apply(2, &second), Change::None);
        assert_eq!(image.cluster_id.as_deref(), Some("first"));
        let mut image = MetadataImage::default();
        let unusable = MetadataRecord::ClusterId {
            cluster_id: "prod.eu".into(),
        };
        assert_eq!(image.apply(1, &unusable), Change::None);
        assert_eq!(image.apply(2, &first), Change::ClusterId);
    }

    #[test]
    fn a_fence_names_one_registration_and_a_new_one_is_unfenced() {
        let mut image = MetadataImage::default();
        image.apply(3, &register(1, 10));
        image.apply(4, &register(2, 20));
        assert_eq!(image.brokers[&1].epoch, 3);
        assert_eq!(
            image.apply(
                5,
                &MetadataRecord::FenceBroker {
                    node_id: 1,
                    epoch: 3
                }
            ),
            Change::Brokers
        );
        assert_eq!(
            image.live_brokers().map(|b| b.node_id).collect::<Vec<_>>(),
            vec![2]
        );
        // It restarts and registers again: a new epoch, not fenced; the old epoch's unfence is stale.
        image.apply(6, &register(1, 11));
        assert!(!image.brokers[&1].fenced);
        assert_eq!(image.brokers[&1].epoch, 6);
        assert_eq!(
            image.apply(
                7,
                &MetadataRecord::FenceBroker {
                    node_id: 1,
                    epoch: 3
                }
            ),
            Change::None
        );
        assert_eq!(image.live_brokers().count(), 2);
        image.skip(8);
        assert_eq!(image.applied_index, 8);
    }

    #[test]
    fn producer_id_blocks_never_overlap() {
        let mut image = MetadataImage::default();
        let block = |node_id, first_id| MetadataRecord::ProducerIds {
            node_id,
            first_id,
            count: 1000,
        };
        assert_eq!(image.apply(1, &block(1, 5000)), Change::ProducerIds);
        assert_eq!(image.next_producer_id, 6000);
        // Node 2 proposed from an older image: its block overlaps and is ignored everywhere.
        assert_eq!(image.apply(2, &block(2, 5500)), Change::None);
        assert_eq!(image.apply(3, &block(2, 6000)), Change::ProducerIds);
        assert_eq!(image.next_producer_id, 7000);
    }
}
