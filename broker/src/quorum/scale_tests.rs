//! Start-up cost of a large metadata log (opt-in: `cargo test --release -p broker --lib
//! quorum::scale_tests -- --ignored --nocapture`; results in BENCHMARKS.md). A log of 10,000 topics of
//! 10 partitions (RF 3) — 100,000 partitions — is written through `QuorumLog::persist`, then timed: open
//! and replay the file, decode and apply every record to an image, make the shards' metadata from it
//! (`control::quorum_publisher::derive`) and write `cluster_metadata.toml`; then the same image as a
//! snapshot: encode it, compact the log into it, and open and decode it again.

use super::image::MetadataImage;
use super::log_store::QuorumLog;
use super::records::MetadataRecord;
use raft::eraftpb::{Entry, HardState};
use raft::Storage;
use std::time::Instant;
use uuid::Uuid;

const TOPICS: usize = 10_000;
const PARTITIONS: i32 = 10;

fn topic_batch(index: usize) -> MetadataRecord {
    let topic_id = Uuid::new_v4();
    let mut records = vec![MetadataRecord::Topic {
        topic_id,
        name: format!("topic-{index:05}"),
        configs: vec![("retention.ms".into(), "86400000".into())],
    }];
    records.extend((0..PARTITIONS).map(|partition| {
        let leader = (index as i32 + partition) % 3;
        MetadataRecord::Partition {
            topic_id,
            partition,
            replicas: vec![leader, (leader + 1) % 3, (leader + 2) % 3],
            isr: vec![leader],
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }));
    MetadataRecord::Batch(records)
}

#[test]
#[ignore = "a measurement, run by hand (see the module doc)"]
fn start_up_with_100k_partitions() {
    let directory = tempfile::tempdir().unwrap();
    let voters = [1u64];
    let log = QuorumLog::open(directory.path(), &voters).unwrap();
    let mut entries: Vec<Entry> = (0..TOPICS)
        .map(|index| Entry {
            index: index as u64 + 1,
            term: 1,
            data: topic_batch(index).encode().into(),
            ..Default::default()
        })
        .collect();
    entries.push(Entry {
        index: TOPICS as u64 + 1,
        term: 1,
        data: MetadataRecord::TopicsMigrated.encode().into(),
        ..Default::default()
    });
    let last = entries.len() as u64;
    let state = HardState {
        term: 1,
        vote: 1,
        commit: last,
        ..Default::default()
    };
    shard::Simulation::new()
        .block_on(log.persist(&entries, Some(&state)))
        .unwrap();
    drop(log);
    let bytes = std::fs::metadata(directory.path().join("__cluster_metadata-0/quorum.log"))
        .unwrap()
        .len();

    let started = Instant::now();
    let log = QuorumLog::open(directory.path(), &voters).unwrap();
    let opened = started.elapsed();
    let storage = log.storage();
    let committed = storage.entries(1, last + 1, u64::MAX, raft::GetEntriesContext::empty(false));
    let committed = committed.unwrap();
    let read = started.elapsed();
    let mut image = MetadataImage::default();
    for entry in &committed {
        let record = MetadataRecord::decode(&entry.data).unwrap();
        image.apply(entry.index, &record);
    }
    let applied = started.elapsed();
    let mut current = crate::metadata::ClusterMetadata::new_cluster();
    current.node_id = 1;
    let metadata = crate::control::quorum_publisher::derive(&current, &image, 2, Some(1));
    let derived = started.elapsed();
    metadata.persist(directory.path()).unwrap();
    let persisted = started.elapsed();
    let partitions: usize = image.topics.values().map(|t| t.partitions.len()).sum();
    assert_eq!(partitions, TOPICS * PARTITIONS as usize);
    assert!(image.topics_migrated);
    let file = std::fs::metadata(directory.path().join(crate::metadata::METADATA_FILE))
        .unwrap()
        .len();
    println!(
        "{partitions} partitions, quorum.log {bytes} bytes, cluster_metadata.toml {file} bytes: \
         open+replay {opened:?}, entries {:?}, decode+apply {:?}, derive {:?}, toml persist {:?}",
        read - opened,
        applied - read,
        derived - applied,
        persisted - derived
    );
    let reloaded = Instant::now();
    crate::metadata::ClusterMetadata::load_file(
        &directory.path().join(crate::metadata::METADATA_FILE),
    )
    .unwrap()
    .unwrap();
    println!("cluster_metadata.toml load {:?}", reloaded.elapsed());

    let started = Instant::now();
    let data = super::snapshot::encode(&image);
    let encoded = started.elapsed();
    let mut snapshot = raft::eraftpb::Snapshot::default();
    snapshot.mut_metadata().index = image.applied_index;
    snapshot.mut_metadata().term = 1;
    snapshot
        .mut_metadata()
        .set_conf_state(raft::eraftpb::ConfState::from((voters.to_vec(), vec![])));
    snapshot.set_data(data.clone().into());
    shard::Simulation::new()
        .block_on(log.compact(snapshot))
        .unwrap();
    let compacted = started.elapsed();
    drop(log);
    let reopened = Instant::now();
    let log = QuorumLog::open(directory.path(), &voters).unwrap();
    let opened = reopened.elapsed();
    let decoded = super::snapshot::decode(log.storage().core().snapshot().get_data()).unwrap();
    let loaded = reopened.elapsed();
    assert_eq!(decoded, image);
    println!(
        "snapshot {} bytes: encode {encoded:?}, compact (rewrite + fsync) {:?}; \
         start from it: open {opened:?}, decode {:?}",
        data.len(),
        compacted - encoded,
        loaded - opened
    );
}
