//! Automatic leader rebalancing (Kafka's `auto.leader.rebalance.enable`): leaders move when brokers
//! stop and come back, and over time pile up on the brokers that stayed. Every
//! `leader.imbalance.check.interval.seconds` the active controller looks, per broker, at the partitions
//! it is the preferred leader of (their first replica): if more than
//! `leader.imbalance.per.broker.percentage` of them are led by another broker, it proposes a
//! preferred-leader election (an `ElectLeader` record) for each of those where the broker is a live
//! in-sync replica. Partitions under reassignment are left alone (their replicas are moving).

use super::image::MetadataImage;
use super::partition_changes::preferred_election_due;
use super::records::{Election, MetadataRecord};
use std::collections::BTreeMap;

/// The preferred-leader elections the image calls for, with more than `imbalance_percentage` percent
/// of a broker's preferred partitions led elsewhere.
pub fn elections_due(image: &MetadataImage, imbalance_percentage: u32) -> Vec<MetadataRecord> {
    let live = |id: &i32| image.brokers.get(id).is_some_and(|broker| !broker.fenced);
    // Per preferred broker: how many partitions it should lead, how many it does not, and the
    // elections that would give those back (where it is a live in-sync replica).
    let mut preferred: BTreeMap<i32, (usize, usize, Vec<MetadataRecord>)> = BTreeMap::new();
    for topic in image.topics.values() {
        for (index, partition) in topic.partitions.iter().enumerate() {
            let Some(&first) = partition.replicas.first() else {
                continue;
            };
            if partition.is_reassigning() {
                continue;
            }
            let (total, led_elsewhere, elections) = preferred.entry(first).or_default();
            *total += 1;
            if partition.leader == first {
                continue;
            }
            *led_elsewhere += 1;
            if preferred_election_due(partition, live) {
                elections.push(MetadataRecord::ElectLeader {
                    topic_id: topic.id,
                    partition: index as i32,
                    partition_epoch: partition.partition_epoch,
                    election: Election::Preferred,
                });
            }
        }
    }
    preferred
        .into_values()
        .filter(|(total, led_elsewhere, _)| {
            // More than the percentage: led_elsewhere * 100 > total * percentage.
            led_elsewhere * 100 > total * imbalance_percentage as usize
        })
        .flat_map(|(_, _, elections)| elections)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::PartitionState;
    use crate::quorum::image::{BrokerRegistration, TopicImage};
    use uuid::Uuid;

    fn image(leaders: &[(i32, Vec<i32>)]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for id in 1..=3 {
            image.brokers.insert(
                id,
                BrokerRegistration {
                    node_id: id,
                    epoch: 1,
                    incarnation: 1,
                    host: "localhost".into(),
                    port: 9092,
                    rack: None,
                    fenced: false,
                },
            );
        }
        let partitions = leaders
            .iter()
            .map(|(leader, replicas)| PartitionState {
                replicas: replicas.clone(),
                isr: replicas.clone(),
                leader: *leader,
                leader_epoch: 1,
                partition_epoch: 1,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            })
            .collect();
        image.topics.insert(
            "orders".into(),
            TopicImage {
                id: Uuid::from_u128(7),
                configs: BTreeMap::new(),
                partitions,
            },
        );
        image
    }

    #[test]
    fn a_broker_leading_none_of_its_preferred_partitions_gets_them_back() {
        let image = image(&[(2, vec![1, 2, 3]), (2, vec![2, 3, 1]), (3, vec![3, 1, 2])]);
        let due = elections_due(&image, 10);
        assert_eq!(
            due,
            vec![MetadataRecord::ElectLeader {
                topic_id: Uuid::from_u128(7),
                partition: 0,
                partition_epoch: 1,
                election: Election::Preferred,
            }]
        );
    }

    #[test]
    fn an_imbalance_within_the_percentage_is_left_alone() {
        // Broker 1 prefers 10 partitions and leads 9 of them: 10 % is not more than 10 %.
        let mut leaders = vec![(1, vec![1, 2, 3]); 9];
        leaders.push((2, vec![1, 2, 3]));
        assert!(elections_due(&image(&leaders), 10).is_empty());
        assert_eq!(elections_due(&image(&leaders), 9).len(), 1);
    }

    #[test]
    fn partitions_led_elsewhere_count_toward_the_imbalance_even_where_no_election_is_due() {
        // Broker 1 prefers 3 partitions, leads none; it is in sync in one only: that one moves.
        let mut image = image(&[(2, vec![1, 2, 3]), (2, vec![1, 2, 3]), (2, vec![1, 2, 3])]);
        let partitions = &mut image.topics.get_mut("orders").expect("created").partitions;
        partitions[1].isr = vec![2, 3];
        partitions[2].isr = vec![2, 3];
        assert_eq!(elections_due(&image, 50).len(), 1);
    }

    #[test]
    fn a_fenced_or_out_of_sync_preferred_leader_is_not_elected() {
        let mut fenced = image(&[(2, vec![1, 2, 3])]);
        fenced.brokers.get_mut(&1).expect("registered").fenced = true;
        assert!(elections_due(&fenced, 10).is_empty());
        let mut out_of_sync = image(&[(2, vec![1, 2, 3])]);
        out_of_sync
            .topics
            .get_mut("orders")
            .expect("created")
            .partitions[0]
            .isr = vec![2, 3];
        assert!(elections_due(&out_of_sync, 10).is_empty());
    }
}
