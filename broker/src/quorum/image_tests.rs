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

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn topic(n: u128, name: &str) -> MetadataRecord {
    MetadataRecord::Topic {
        topic_id: id(n),
        name: name.into(),
        configs: vec![("cleanup.policy".into(), "compact".into())],
    }
}

fn partition(
    n: u128,
    partition: i32,
    replicas: &[i32],
    isr: &[i32],
    leader: i32,
) -> MetadataRecord {
    MetadataRecord::Partition {
        topic_id: id(n),
        partition,
        replicas: replicas.to_vec(),
        isr: isr.to_vec(),
        leader,
        leader_epoch: 0,
        partition_epoch: 0,
    }
}

fn config(target: ConfigTarget, name: &str, value: Option<&str>) -> MetadataRecord {
    MetadataRecord::Config {
        target,
        name: name.into(),
        value: value.map(String::from),
    }
}

/// Applies `records` at indexes after the image's, returning their changes.
fn apply_all(image: &mut MetadataImage, records: &[MetadataRecord]) -> Vec<Change> {
    records
        .iter()
        .map(|record| image.apply(image.applied_index + 1, record))
        .collect()
}

/// A refused record leaves the image as it was but for the applied index.
fn assert_refused(image: &mut MetadataImage, record: &MetadataRecord) {
    let before = image.clone();
    let index = image.applied_index + 1;
    assert_eq!(image.apply(index, record), Change::Refused, "{record:?}");
    assert_eq!(image.applied_index, index);
    assert_eq!(
        *image,
        MetadataImage {
            applied_index: index,
            ..before
        }
    );
}

#[test]
fn a_topic_name_is_taken_once() {
    let mut image = MetadataImage::default();
    assert_eq!(image.apply(1, &topic(1, "orders.eu")), Change::Topics);
    let orders = &image.topics["orders.eu"];
    assert_eq!(orders.id, id(1));
    assert_eq!(orders.configs["cleanup.policy"], "compact");
    assert!(orders.partitions.is_empty());
    assert_refused(&mut image, &topic(2, "orders.eu"));
    assert_refused(&mut image, &topic(2, "orders_eu"));
    assert_refused(&mut image, &topic(1, "payments"));
    assert_refused(&mut image, &topic(2, ""));
    assert_refused(&mut image, &topic(0, "nil-id"));
    assert_eq!(image.apply(9, &topic(2, "orders-eu")), Change::Topics);
    assert_eq!(
        image.topic_by_id(id(2)).map(|(name, _)| name.as_str()),
        Some("orders-eu")
    );
    assert!(image.topic_by_id(id(3)).is_none());
}

#[test]
fn partitions_are_added_in_order() {
    let mut image = MetadataImage::default();
    image.apply(1, &topic(1, "orders"));
    image.apply(2, &register(1, 10));
    assert_refused(&mut image, &partition(1, 1, &[1], &[1], 1));
    assert_refused(&mut image, &partition(2, 0, &[1], &[1], 1));
    assert_refused(&mut image, &partition(1, -1, &[1], &[1], 1));
    assert_refused(&mut image, &partition(1, 0, &[], &[], -1));
    assert_refused(&mut image, &partition(1, 0, &[1, 2, 1], &[1], 1));
    assert_refused(&mut image, &partition(1, 0, &[1, 2], &[3], -1));
    assert_refused(&mut image, &partition(1, 0, &[1, 2], &[1], 2));
    assert_eq!(
        image.apply(20, &partition(1, 0, &[1, 2], &[1], 1)),
        Change::Topics
    );
    assert_eq!(
        image.apply(21, &partition(1, 1, &[2, 1], &[], -1)),
        Change::Topics
    );
    assert_refused(&mut image, &partition(1, 1, &[2], &[2], 2));
    let partitions = &image.topics["orders"].partitions;
    assert_eq!(partitions.len(), 2);
    assert_eq!(partitions[0].replicas, vec![1, 2]);
    assert_eq!((partitions[0].leader, partitions[1].leader), (1, -1));
}

#[test]
fn removing_a_topic() {
    let mut image = MetadataImage::default();
    apply_all(
        &mut image,
        &[topic(1, "orders"), partition(1, 0, &[1], &[1], 1)],
    );
    assert_eq!(
        image.apply(3, &MetadataRecord::RemoveTopic { topic_id: id(1) }),
        Change::Topics
    );
    assert!(image.topics.is_empty());
    assert_refused(&mut image, &MetadataRecord::RemoveTopic { topic_id: id(1) });
    // The name and id are free again.
    assert_eq!(image.apply(5, &topic(1, "orders")), Change::Topics);
}

#[test]
fn configs_set_and_remove() {
    let mut image = MetadataImage::default();
    let orders = || ConfigTarget::Topic("orders".into());
    assert_refused(&mut image, &config(orders(), "retention.ms", Some("1")));
    image.apply(2, &topic(1, "orders"));
    let changes = apply_all(
        &mut image,
        &[
            config(orders(), "retention.ms", Some("1")),
            config(orders(), "retention.ms", Some("1")),
            config(orders(), "cleanup.policy", None),
            config(orders(), "cleanup.policy", None),
            config(ConfigTarget::BrokerDefault, "log.retention.ms", Some("5")),
            config(ConfigTarget::BrokerDefault, "log.retention.ms", Some("6")),
            config(ConfigTarget::BrokerDefault, "unset", None),
        ],
    );
    use Change::{None as Same, Topics};
    assert_eq!(
        changes,
        vec![Topics, Same, Topics, Same, Topics, Topics, Same]
    );
    let configs = &image.topics["orders"].configs;
    assert_eq!(configs.len(), 1);
    assert_eq!(configs["retention.ms"], "1");
    assert_eq!(image.broker_default_configs["log.retention.ms"], "6");
    assert_eq!(
        image.apply(
            10,
            &config(ConfigTarget::BrokerDefault, "log.retention.ms", None)
        ),
        Change::Topics
    );
    assert!(image.broker_default_configs.is_empty());
}

#[test]
fn migration_is_committed_once() {
    let mut image = MetadataImage::default();
    assert!(!image.topics_migrated);
    assert_eq!(
        image.apply(1, &MetadataRecord::TopicsMigrated),
        Change::Topics
    );
    assert!(image.topics_migrated);
    assert_refused(&mut image, &MetadataRecord::TopicsMigrated);
}

#[test]
fn a_batch_is_applied_whole() {
    let mut image = MetadataImage::default();
    let batch = MetadataRecord::Batch(vec![
        topic(1, "orders"),
        partition(1, 0, &[1, 2], &[1], 1),
        partition(1, 1, &[2, 1], &[2], 2),
    ]);
    assert_eq!(image.apply(4, &batch), Change::Topics);
    assert_eq!(image.applied_index, 4);
    assert_eq!(image.topics["orders"].partitions.len(), 2);
    // Without topic records: the largest change; empty: none.
    let brokers = MetadataRecord::Batch(vec![
        MetadataRecord::ProducerIds {
            node_id: 1,
            first_id: 0,
            count: 10,
        },
        register(1, 10),
    ]);
    assert_eq!(image.apply(5, &brokers), Change::Brokers);
    assert_eq!(image.brokers[&1].epoch, 5);
    assert_eq!(image.apply(6, &MetadataRecord::Batch(vec![])), Change::None);
}

#[test]
fn a_refused_batch_changes_nothing() {
    let mut image = MetadataImage::default();
    image.apply(1, &topic(1, "orders"));
    // Its last partition is out of order: the topic and the first partition are not applied either.
    let batch = MetadataRecord::Batch(vec![
        register(1, 10),
        topic(2, "payments"),
        partition(2, 0, &[1], &[1], 1),
        partition(2, 2, &[1], &[1], 1),
    ]);
    assert_refused(&mut image, &batch);
    let nested = MetadataRecord::Batch(vec![
        topic(2, "payments"),
        MetadataRecord::Batch(vec![partition(2, 0, &[1], &[1], 1)]),
    ]);
    assert_refused(&mut image, &nested);
    assert_eq!(image.topics.len(), 1);
    assert!(image.brokers.is_empty());
}

#[test]
fn a_fenced_leader_leaves_its_partitions_offline_and_returns_as_leader() {
    let mut image = MetadataImage::default();
    apply_all(
        &mut image,
        &[register(1, 10), register(2, 20), register(3, 30)],
    );
    apply_all(
        &mut image,
        &[
            topic(1, "orders"),
            partition(1, 0, &[1, 2], &[1], 1),
            partition(1, 1, &[1, 2, 3], &[1, 3, 2], 1),
            partition(1, 2, &[2, 1], &[2], 2),
        ],
    );
    let leaders = |image: &MetadataImage| -> Vec<(i32, i32, i32)> {
        let partitions = &image.topics["orders"].partitions;
        let state = |p: &PartitionImage| (p.leader, p.leader_epoch, p.partition_epoch);
        partitions.iter().map(state).collect()
    };
    let fence = |node_id, epoch| MetadataRecord::FenceBroker { node_id, epoch };
    let unfence = |node_id, epoch| MetadataRecord::UnfenceBroker { node_id, epoch };
    // Broker 3 is fenced first: it leaves partition 1's ISR (partition epoch 1). Once 1 is fenced too,
    // 1 leaves that ISR as well and partition 1 goes to 2, its last live member.
    assert_eq!(image.apply(8, &fence(3, 3)), Change::Brokers);
    assert_eq!(image.topics["orders"].partitions[1].isr, vec![1, 2]);
    assert_eq!(image.apply(9, &fence(1, 1)), Change::Brokers);
    assert_eq!(leaders(&image), vec![(-1, 1, 1), (2, 1, 3), (2, 0, 0)]);
    // The last member stays in the ISR: partition 0 stays offline (no unclean election of 2).
    assert_eq!(image.topics["orders"].partitions[0].isr, vec![1]);
    assert_eq!(image.topics["orders"].partitions[1].isr, vec![2]);
    // Broker 3 returns: nothing offline holds it.
    assert_eq!(image.apply(10, &unfence(3, 3)), Change::Brokers);
    assert_eq!(leaders(&image), vec![(-1, 1, 1), (2, 1, 3), (2, 0, 0)]);
    // Broker 1 returns: it leads its offline partition again, not the one 2 took over (whose ISR it
    // rejoins only through its leader, once caught up).
    assert_eq!(image.apply(11, &unfence(1, 1)), Change::Brokers);
    assert_eq!(leaders(&image), vec![(1, 2, 2), (2, 1, 3), (2, 0, 0)]);
    // Broker 2 fenced: it is the last member of partitions 1 and 2, which go offline.
    image.apply(12, &fence(2, 2));
    assert_eq!(leaders(&image), vec![(1, 2, 2), (-1, 2, 4), (-1, 1, 1)]);
    // A stale fence moves nothing.
    assert_eq!(image.apply(13, &fence(1, 99)), Change::None);
    // Broker 2 restarts and registers anew (unfenced): it leads both again.
    assert_eq!(image.apply(14, &register(2, 21)), Change::Brokers);
    assert_eq!(leaders(&image), vec![(1, 2, 2), (2, 3, 5), (2, 2, 2)]);
}

#[test]
fn a_leader_changes_the_isr_only_with_the_current_epochs_and_live_new_members() {
    let mut image = MetadataImage::default();
    apply_all(
        &mut image,
        &[
            register(1, 10),
            register(2, 20),
            register(3, 30),
            topic(1, "orders"),
            partition(1, 0, &[1, 2, 3], &[1, 2, 3], 1),
        ],
    );
    let alter =
        |leader, leader_epoch, partition_epoch, isr: &[i32]| MetadataRecord::AlterPartition {
            topic_id: id(1),
            partition: 0,
            leader,
            leader_epoch,
            partition_epoch,
            isr: isr.to_vec(),
        };
    let state = |image: &MetadataImage| image.topics["orders"].partitions[0].clone();
    // The leader drops 3 (lagging): the partition epoch moves, the leader epoch does not.
    assert_eq!(
        image.apply(image.applied_index + 1, &alter(1, 0, 0, &[1, 2])),
        Change::Topics
    );
    assert_eq!(
        (
            state(&image).isr,
            state(&image).leader_epoch,
            state(&image).partition_epoch
        ),
        (vec![1, 2], 0, 1)
    );
    // Made against the old partition epoch, or by another broker, or an older leader epoch: stale.
    assert_refused(&mut image, &alter(1, 0, 0, &[1, 2, 3]));
    assert_refused(&mut image, &alter(2, 0, 1, &[1, 2, 3]));
    assert_refused(&mut image, &alter(1, 1, 1, &[1, 2, 3]));
    // Malformed: without the leader, with a non-replica, a member twice, an unknown partition.
    assert_refused(&mut image, &alter(1, 0, 1, &[2, 3]));
    assert_refused(&mut image, &alter(1, 0, 1, &[1, 4]));
    assert_refused(&mut image, &alter(1, 0, 1, &[1, 2, 2]));
    assert_refused(
        &mut image,
        &MetadataRecord::AlterPartition {
            topic_id: id(1),
            partition: 1,
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 1,
            isr: vec![1],
        },
    );
    // A fenced broker is not added back; once unfenced it is.
    image.apply(
        image.applied_index + 1,
        &MetadataRecord::FenceBroker {
            node_id: 3,
            epoch: 3,
        },
    );
    assert_refused(&mut image, &alter(1, 0, 1, &[1, 2, 3]));
    image.apply(
        image.applied_index + 1,
        &MetadataRecord::UnfenceBroker {
            node_id: 3,
            epoch: 3,
        },
    );
    assert_eq!(
        image.apply(image.applied_index + 1, &alter(1, 0, 1, &[1, 2, 3])),
        Change::Topics
    );
    assert_eq!(
        (state(&image).isr, state(&image).partition_epoch),
        (vec![1, 2, 3], 2)
    );
}

#[test]
fn unclean_election_lets_a_live_replica_out_of_sync_lead_only_where_enabled() {
    let mut image = MetadataImage::default();
    apply_all(
        &mut image,
        &[
            register(1, 10),
            register(2, 20),
            topic(1, "orders"),
            partition(1, 0, &[1, 2], &[1], 1),
            topic(2, "audit"),
            partition(2, 0, &[1, 2], &[1], 1),
        ],
    );
    let unclean = |topic: &str| {
        config(
            ConfigTarget::Topic(topic.into()),
            "unclean.leader.election.enable",
            Some("true"),
        )
    };
    apply_all(&mut image, &[unclean("orders")]);
    let state = |image: &MetadataImage, topic: &str| {
        let partition = &image.topics[topic].partitions[0];
        (
            partition.leader,
            partition.isr.clone(),
            partition.leader_epoch,
        )
    };
    // 1 (the whole ISR) is fenced: "orders" goes to 2, out of sync, alone in its ISR; "audit" stays
    // offline with its ISR.
    image.apply(
        image.applied_index + 1,
        &MetadataRecord::FenceBroker {
            node_id: 1,
            epoch: 1,
        },
    );
    assert_eq!(state(&image, "orders"), (2, vec![2], 2));
    assert_eq!(state(&image, "audit"), (-1, vec![1], 1));
    // Enabling it for "audit" (here as the brokers' default) elects at once.
    apply_all(
        &mut image,
        &[config(
            ConfigTarget::BrokerDefault,
            "unclean.leader.election.enable",
            Some("true"),
        )],
    );
    assert_eq!(state(&image, "audit"), (2, vec![2], 2));
}

#[test]
fn an_unregistered_isr_member_is_not_elected() {
    let mut image = MetadataImage::default();
    apply_all(
        &mut image,
        &[
            register(1, 10),
            topic(1, "orders"),
            partition(1, 0, &[1, 5], &[1, 5], 1),
        ],
    );
    image.apply(
        4,
        &MetadataRecord::FenceBroker {
            node_id: 1,
            epoch: 1,
        },
    );
    assert_eq!(image.topics["orders"].partitions[0].leader, -1);
}

#[test]
fn a_new_partition_led_by_a_broker_not_live_gets_a_live_isr_member_or_none() {
    let mut image = MetadataImage::default();
    apply_all(&mut image, &[topic(1, "orders"), register(2, 20)]);
    // Placed on brokers 1 (never registered here) and 2.
    let index = image.applied_index + 1;
    image.apply(index, &partition(1, 0, &[1, 2], &[1, 2], 1));
    image.apply(index + 1, &partition(1, 1, &[1, 2], &[1], 1));
    let partitions = &image.topics["orders"].partitions;
    assert_eq!((partitions[0].leader, partitions[0].leader_epoch), (2, 1));
    assert_eq!((partitions[1].leader, partitions[1].leader_epoch), (-1, 1));
    // Broker 1 registers: it takes the partition only it is in sync for.
    image.apply(index + 2, &register(1, 10));
    let partitions = &image.topics["orders"].partitions;
    assert_eq!((partitions[1].leader, partitions[1].leader_epoch), (1, 2));
    assert_eq!(partitions[0].leader, 2);
}

#[test]
fn a_cluster_id_in_a_batch_is_refused() {
    let mut image = MetadataImage::default();
    let batch = MetadataRecord::Batch(vec![
        topic(1, "orders"),
        MetadataRecord::ClusterId {
            cluster_id: "q1Xk9-abc_DEF".into(),
        },
    ]);
    assert_refused(&mut image, &batch);
    assert!(image.cluster_id.is_none() && image.topics.is_empty());
}
