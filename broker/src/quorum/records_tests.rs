use super::*;
use proptest::prelude::*;

fn samples() -> Vec<MetadataRecord> {
    vec![
        MetadataRecord::ClusterId {
            cluster_id: "q1Xk9-abc_DEF".into(),
        },
        MetadataRecord::RegisterBroker {
            node_id: 3,
            incarnation: u64::MAX - 7,
            host: "broker-3.example".into(),
            port: 9092,
            rack: Some("rack-a".into()),
        },
        MetadataRecord::RegisterBroker {
            node_id: 0,
            incarnation: 1,
            host: "127.0.0.1".into(),
            port: 1,
            rack: None,
        },
        MetadataRecord::FenceBroker {
            node_id: 2,
            epoch: 17,
        },
        MetadataRecord::UnfenceBroker {
            node_id: 2,
            epoch: 17,
        },
        MetadataRecord::ProducerIds {
            node_id: 1,
            first_id: 4000,
            count: 1000,
        },
        topic("orders", vec![("cleanup.policy".into(), "compact".into())]),
        partition(0, vec![1, 2, 3], vec![1, 2], 1),
        MetadataRecord::RemoveTopic { topic_id: TOPIC_ID },
        MetadataRecord::Config {
            target: ConfigTarget::Topic("orders".into()),
            name: "retention.ms".into(),
            value: Some("60000".into()),
        },
        MetadataRecord::Config {
            target: ConfigTarget::BrokerDefault,
            name: "log.retention.ms".into(),
            value: None,
        },
        MetadataRecord::TopicsMigrated,
        MetadataRecord::Batch(vec![
            topic("events", vec![]),
            partition(0, vec![2], vec![2], 2),
            partition(1, vec![3, 1], vec![], -1),
        ]),
        MetadataRecord::ElectLeader {
            topic_id: TOPIC_ID,
            partition: 3,
            partition_epoch: 8,
            election: Election::Preferred,
        },
        MetadataRecord::ElectLeader {
            topic_id: TOPIC_ID,
            partition: 0,
            partition_epoch: -1,
            election: Election::Unclean,
        },
        MetadataRecord::Reassign {
            topic_id: TOPIC_ID,
            partition: 2,
            target: Some(vec![4, 5, 1]),
        },
        MetadataRecord::Reassign {
            topic_id: TOPIC_ID,
            partition: 2,
            target: None,
        },
        MetadataRecord::Batch(vec![]),
    ]
}

const TOPIC_ID: Uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);

fn topic(name: &str, configs: Vec<(String, String)>) -> MetadataRecord {
    MetadataRecord::Topic {
        topic_id: TOPIC_ID,
        name: name.into(),
        configs,
    }
}

fn partition(partition: i32, replicas: Vec<i32>, isr: Vec<i32>, leader: i32) -> MetadataRecord {
    MetadataRecord::Partition {
        topic_id: TOPIC_ID,
        partition,
        replicas,
        isr,
        leader,
        leader_epoch: 4,
        partition_epoch: 9,
    }
}

#[test]
fn every_record_round_trips() {
    for record in samples() {
        assert_eq!(MetadataRecord::decode(&record.encode()), Ok(record));
    }
}

#[test]
fn every_cut_short_record_is_refused() {
    for record in samples() {
        let bytes = record.encode();
        for length in 0..bytes.len() {
            assert!(
                MetadataRecord::decode(&bytes[..length]).is_err(),
                "{record:?} cut to {length} bytes decoded"
            );
        }
    }
}

#[test]
fn every_record_with_a_trailing_byte_is_refused() {
    for record in samples() {
        let mut bytes = record.encode();
        bytes.push(0);
        assert_eq!(
            MetadataRecord::decode(&bytes),
            Err(RecordError::TrailingBytes(1)),
            "{record:?}"
        );
    }
    // A batch's record with a byte more than its own encoding is refused too.
    let inner = MetadataRecord::TopicsMigrated.encode();
    let mut bytes = vec![
        FRAME_VERSION,
        BATCH,
        0,
        0,
        0,
        1,
        0,
        0,
        0,
        inner.len() as u8 + 1,
    ];
    bytes.extend_from_slice(&inner);
    bytes.push(0);
    assert_eq!(
        MetadataRecord::decode(&bytes),
        Err(RecordError::TrailingBytes(1))
    );
}

#[test]
fn a_batch_inside_a_batch_is_refused() {
    let inner = [FRAME_VERSION, BATCH, 0, 0, 0, 0];
    let mut bytes = vec![FRAME_VERSION, BATCH, 0, 0, 0, 1, 0, 0, 0, inner.len() as u8];
    bytes.extend_from_slice(&inner);
    assert_eq!(
        MetadataRecord::decode(&bytes),
        Err(RecordError::NestedBatch)
    );
    // The inner one alone is a (empty) batch.
    assert_eq!(
        MetadataRecord::decode(&inner),
        Ok(MetadataRecord::Batch(vec![]))
    );
}

#[test]
fn a_list_longer_than_the_limit_is_refused() {
    let mut bytes = vec![FRAME_VERSION, PARTITION];
    bytes.extend_from_slice(TOPIC_ID.as_bytes());
    bytes.extend_from_slice(&0i32.to_be_bytes());
    bytes.extend_from_slice(&(MAX_LIST_LENGTH as u16 + 1).to_be_bytes());
    for id in 0..=MAX_LIST_LENGTH as i32 {
        bytes.extend_from_slice(&id.to_be_bytes());
    }
    assert_eq!(
        MetadataRecord::decode(&bytes),
        Err(RecordError::ListTooLong(MAX_LIST_LENGTH + 1))
    );
    let mut bytes = vec![FRAME_VERSION, TOPIC];
    bytes.extend_from_slice(TOPIC_ID.as_bytes());
    bytes.extend_from_slice(&[0, 1, b't', 0xff, 0xff]);
    assert_eq!(
        MetadataRecord::decode(&bytes),
        Err(RecordError::ListTooLong(0xffff))
    );
}

#[test]
fn a_batch_longer_than_the_limit_is_refused_before_it_is_read() {
    // Four bytes claim four billion records: refused from the count alone.
    let bytes = [FRAME_VERSION, BATCH, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(
        MetadataRecord::decode(&bytes),
        Err(RecordError::BatchTooLong(u32::MAX as usize))
    );
    let mut bytes = vec![FRAME_VERSION, BATCH];
    bytes.extend_from_slice(&(MAX_BATCH_RECORDS as u32 + 1).to_be_bytes());
    assert_eq!(
        MetadataRecord::decode(&bytes),
        Err(RecordError::BatchTooLong(MAX_BATCH_RECORDS + 1))
    );
    // A count within the limit with no records behind it ends early (and reserves little).
    let mut bytes = vec![FRAME_VERSION, BATCH];
    bytes.extend_from_slice(&(MAX_BATCH_RECORDS as u32).to_be_bytes());
    assert_eq!(
        MetadataRecord::decode(&bytes),
        Err(RecordError::Truncated { needed: 4 })
    );
}

#[test]
fn a_bad_config_target_is_refused() {
    let mut bytes = MetadataRecord::Config {
        target: ConfigTarget::BrokerDefault,
        name: "a".into(),
        value: None,
    }
    .encode();
    bytes[2] = 2;
    assert_eq!(
        MetadataRecord::decode(&bytes),
        Err(RecordError::BadConfigTarget(2))
    );
}

#[test]
fn newer_versions_unknown_types_and_trailing_bytes_are_refused() {
    let mut bytes = samples()[0].encode();
    bytes[0] = FRAME_VERSION + 1;
    assert_eq!(
        MetadataRecord::decode(&bytes),
        Err(RecordError::UnknownVersion(FRAME_VERSION + 1))
    );
    assert_eq!(
        MetadataRecord::decode(&[FRAME_VERSION, 99]),
        Err(RecordError::UnknownType(99))
    );
    let mut bytes = samples()[3].encode();
    bytes.push(0);
    assert_eq!(
        MetadataRecord::decode(&bytes),
        Err(RecordError::TrailingBytes(1))
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = MetadataRecord::decode(&data);
    }

    #[test]
    fn arbitrary_records_of_new_types_never_panic(kind in 6u8..=14,
                                                 data in proptest::collection::vec(any::<u8>(), 0..96)) {
        let mut bytes = vec![FRAME_VERSION, kind];
        bytes.extend_from_slice(&data);
        let _ = MetadataRecord::decode(&bytes);
    }

    #[test]
    fn registrations_round_trip(node_id in 0..i32::MAX, incarnation: u64, host in "[a-z0-9.-]{1,40}",
                                port: u16, rack in proptest::option::of("[a-z0-9-]{1,20}")) {
        let record = MetadataRecord::RegisterBroker { node_id, incarnation, host, port, rack };
        prop_assert_eq!(MetadataRecord::decode(&record.encode()), Ok(record));
    }

    #[test]
    fn topic_records_round_trip(id: u128, name in "[a-z0-9._-]{1,40}",
                                configs in proptest::collection::vec(("[a-z.]{1,20}", ".{0,20}"), 0..8),
                                replicas in proptest::collection::vec(any::<i32>(), 0..16),
                                isr in proptest::collection::vec(any::<i32>(), 0..16),
                                numbers: (i32, i32, i32, i32), value in proptest::option::of(".{0,30}"),
                                to_topic: bool) {
        let topic_id = Uuid::from_u128(id);
        let (partition, leader, leader_epoch, partition_epoch) = numbers;
        let target = if to_topic { ConfigTarget::Topic(name.clone()) } else { ConfigTarget::BrokerDefault };
        let records = vec![
            MetadataRecord::Topic { topic_id, name: name.clone(), configs },
            MetadataRecord::Partition { topic_id, partition, replicas: replicas.clone(), isr: isr.clone(), leader, leader_epoch, partition_epoch },
            MetadataRecord::Config { target, name, value },
            MetadataRecord::RemoveTopic { topic_id },
            MetadataRecord::AlterPartition { topic_id, partition, leader, leader_epoch, partition_epoch, isr: isr.clone() },
            MetadataRecord::ElectLeader { topic_id, partition, partition_epoch, election: if to_topic { Election::Preferred } else { Election::Unclean } },
            MetadataRecord::Reassign { topic_id, partition, target: to_topic.then(|| replicas.clone()) },
        ];
        for record in records.iter().cloned().chain([MetadataRecord::Batch(records.clone())]) {
            let bytes = record.encode();
            prop_assert_eq!(MetadataRecord::decode(&bytes), Ok(record));
            for length in 0..bytes.len() {
                prop_assert!(MetadataRecord::decode(&bytes[..length]).is_err());
            }
        }
    }
}
