use super::*;
use crate::quorum::image::Change;
use crate::quorum::records::{ConfigTarget, MetadataRecord};
use proptest::prelude::*;
use uuid::Uuid;

fn topic(id: u128, name: &str) -> MetadataRecord {
    MetadataRecord::Topic {
        topic_id: Uuid::from_u128(id),
        name: name.into(),
        configs: vec![("cleanup.policy".into(), "compact".into())],
    }
}

fn partition(id: u128, partition: i32, replicas: Vec<i32>, leader: i32) -> MetadataRecord {
    MetadataRecord::Partition {
        topic_id: Uuid::from_u128(id),
        partition,
        isr: replicas.clone(),
        replicas,
        leader,
        leader_epoch: 0,
        partition_epoch: 0,
    }
}

/// An image with something of every kind: brokers (one fenced), producer ids, topics, partitions whose
/// leaders moved, configs of both targets, and the migration done.
fn sample() -> MetadataImage {
    let mut records = vec![MetadataRecord::ClusterId {
        cluster_id: "AbCdEfGhIjKlMnOpQrStUv".into(),
    }];
    for node_id in 1..=3 {
        records.push(MetadataRecord::RegisterBroker {
            node_id,
            incarnation: 77 * node_id as u64,
            host: format!("broker-{node_id}.example"),
            port: 9092,
            rack: (node_id != 2).then(|| format!("rack-{}", node_id % 2)),
        });
    }
    records.push(MetadataRecord::ProducerIds {
        node_id: 1,
        first_id: 0,
        count: 1000,
    });
    records.push(MetadataRecord::Batch(vec![
        topic(1, "orders"),
        partition(1, 0, vec![1, 2, 3], 1),
        partition(1, 1, vec![2, 3, 1], 2),
    ]));
    records.push(MetadataRecord::Batch(vec![
        topic(2, "audit.log"),
        partition(2, 0, vec![3], 3),
    ]));
    records.push(MetadataRecord::Config {
        target: ConfigTarget::BrokerDefault,
        name: "log.retention.ms".into(),
        value: Some("3600000".into()),
    });
    records.push(MetadataRecord::Config {
        target: ConfigTarget::Topic("orders".into()),
        name: "retention.bytes".into(),
        value: Some("1048576".into()),
    });
    records.push(MetadataRecord::TopicsMigrated);
    let mut image = MetadataImage::default();
    for (index, record) in records.iter().enumerate() {
        let change = image.apply(index as u64 + 1, record);
        assert!(
            change != Change::Refused && change != Change::None,
            "{record:?}"
        );
    }
    let epoch = image.brokers[&3].epoch;
    let fenced = MetadataRecord::FenceBroker { node_id: 3, epoch };
    assert_eq!(image.apply(20, &fenced), Change::Brokers);
    assert_eq!(image.topics["audit.log"].partitions[0].leader, -1);
    image
}

#[test]
fn an_image_round_trips_with_its_indexes() {
    let image = sample();
    let decoded = decode(&encode(&image)).expect("decodes");
    assert_eq!(decoded, image, "every field, the private indexes included");
    // The indexes work: a colliding name and a taken id are refused after a restore as before.
    let mut restored = decoded;
    assert_eq!(restored.apply(21, &topic(3, "audit_log")), Change::Refused);
    assert_eq!(restored.apply(22, &topic(1, "other")), Change::Refused);
    assert_eq!(
        restored.apply(
            23,
            &MetadataRecord::RemoveTopic {
                topic_id: Uuid::from_u128(2)
            }
        ),
        Change::Topics
    );
    assert_eq!(restored.apply(24, &topic(3, "audit_log")), Change::Topics);
    assert_eq!(
        decode(&encode(&MetadataImage::default())).unwrap(),
        MetadataImage::default()
    );
}

#[test]
fn every_cut_short_or_changed_snapshot_is_refused() {
    let bytes = encode(&sample());
    for length in 0..bytes.len() {
        assert!(decode(&bytes[..length]).is_err(), "cut at {length}");
    }
    for position in 0..bytes.len() {
        let mut changed = bytes.clone();
        changed[position] ^= 0x10;
        assert!(decode(&changed).is_err(), "byte {position} changed");
    }
    let mut newer = bytes.clone();
    newer[4] = SNAPSHOT_VERSION + 1;
    assert_eq!(
        decode(&newer),
        Err(SnapshotError::UnknownVersion(SNAPSHOT_VERSION + 1))
    );
}

/// `body` (without its CRC) with a correct CRC appended.
fn sealed(mut body: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&body);
    body.extend_from_slice(&crc.to_be_bytes());
    body
}

#[test]
fn a_well_sealed_snapshot_that_breaks_the_images_rules_is_refused() {
    let mut image = MetadataImage::default();
    image.apply(1, &topic(1, "a.b"));
    let mut second = MetadataImage::default();
    second.apply(1, &topic(2, "a_b"));
    // Two topics whose names collide, spliced into one snapshot: the topic count says 2.
    let one = encode(&image);
    let other = encode(&second);
    let topic_bytes = |bytes: &[u8]| -> Vec<u8> {
        // The last topic's bytes: from its uuid to before the CRC.
        let id_at = bytes.len() - 4 - (16 + 2 + 3 + 4 + 2 + 14 + 2 + 7 + 4);
        bytes[id_at..bytes.len() - 4].to_vec()
    };
    let mut body = one[..one.len() - 4].to_vec();
    let count_at = body.len() - topic_bytes(&one).len() - 4;
    body[count_at..count_at + 4].copy_from_slice(&2u32.to_be_bytes());
    body.extend(topic_bytes(&other));
    assert!(
        matches!(decode(&sealed(body)), Err(SnapshotError::Invalid(reason)) if reason.contains("collides")),
        "colliding names"
    );

    // A partition led by a broker outside its ISR.
    let mut led = MetadataImage::default();
    led.apply(1, &topic(1, "t"));
    led.apply(2, &partition(1, 0, vec![1, 2], 1));
    let mut bytes = encode(&led);
    // Before the CRC: leader, both epochs, and two empty lists (adding, removing replicas).
    let leader_at = bytes.len() - 4 - 4 - 12;
    bytes[leader_at..leader_at + 4].copy_from_slice(&9i32.to_be_bytes());
    let body = bytes[..bytes.len() - 4].to_vec();
    assert!(matches!(
        decode(&sealed(body)),
        Err(SnapshotError::Invalid(_))
    ));
}

#[test]
fn a_reassignment_under_way_survives_a_snapshot_and_version_0_snapshots_still_decode() {
    let mut image = MetadataImage::default();
    image.apply(1, &topic(1, "t"));
    image.apply(2, &partition(1, 0, vec![1, 2], 1));
    let version_0 = {
        // Version 0 has no adding/removing lists: the last 4 bytes before the CRC go.
        let bytes = encode(&image);
        let mut body = bytes[..bytes.len() - 4 - 4].to_vec();
        body[4] = 0;
        sealed(body)
    };
    assert_eq!(decode(&version_0), Ok(image.clone()));
    let moving = &mut image.topics.get_mut("t").expect("applied").partitions[0];
    moving.replicas = vec![3, 2, 1];
    moving.adding_replicas = vec![3];
    moving.removing_replicas = vec![1];
    assert_eq!(decode(&encode(&image)), Ok(image.clone()));
    // One that adds a broker outside the replicas is refused.
    image.topics.get_mut("t").expect("applied").partitions[0].adding_replicas = vec![4];
    assert!(matches!(
        decode(&encode(&image)),
        Err(SnapshotError::Invalid(_))
    ));
}

proptest! {
    /// Hostile snapshots: any bytes, resealed so the checks past the CRC run, never panic and never
    /// allocate by an untrusted count.
    #[test]
    fn changed_but_sealed_snapshots_never_panic(
        position in any::<prop::sample::Index>(),
        value in any::<u8>(),
        extra in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let bytes = encode(&sample());
        let mut body = bytes[..bytes.len() - 4].to_vec();
        let at = position.index(body.len());
        body[at] = value;
        body.extend(extra);
        let _ = decode(&sealed(body));
    }
}
