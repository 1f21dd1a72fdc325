use super::*;
use crate::internal_topics::OFFSETS_TOPIC;
use crate::partition_dir::{read_topic_id, write_topic_id};

fn topic(shards: Vec<usize>) -> TopicMetadata {
    TopicMetadata {
        id: Uuid::new_v4(),
        shards,
        configs: BTreeMap::new(),
        partitions: Vec::new(),
    }
}

fn partition(data_dir: &Path, name: &str, id: Option<Uuid>) -> PathBuf {
    let dir = data_dir.join(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("00000000000000000000.log"), b"old records").unwrap();
    if let Some(id) = id {
        write_topic_id(&dir, id).unwrap();
    }
    dir
}

fn names(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with(METADATA_FILE))
        .collect();
    names.sort();
    names
}

#[test]
fn partitions_of_missing_shards_are_re_placed_and_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let mut metadata = ClusterMetadata::new_cluster();
    metadata.topics.insert("t".into(), topic(vec![0, 7, 1, 7]));
    metadata.persist(dir.path()).unwrap();
    let loaded = load_metadata(dir.path(), 2, false).unwrap();
    assert!(loaded.topics["t"].shards.iter().all(|&shard| shard < 2));
    assert_eq!(loaded.topics["t"].shards[..3], [0, 0, 1]);
    let reloaded = ClusterMetadata::load_or_create(dir.path()).unwrap();
    assert_eq!(reloaded.topics["t"].shards, loaded.topics["t"].shards);
}

#[test]
fn an_empty_directory_starts_a_new_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let metadata = load_metadata(dir.path(), 1, false).unwrap();
    assert!(metadata.topics.is_empty());
    assert!(dir.path().join(METADATA_FILE).exists());
}

#[test]
fn directories_the_metadata_does_not_own_are_never_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut metadata = ClusterMetadata::new_cluster();
    metadata.topics.insert("live".into(), topic(vec![0, 0, 0]));
    metadata.persist(data).unwrap();
    let live_id = metadata.topics["live"].id;
    let deleted_id = Uuid::new_v4();
    partition(data, "live-0", Some(live_id));
    // Written before topic ids were recorded: listed, so adopted.
    let legacy = partition(data, "live-1", None);
    // An earlier topic of the same name, deleted before the crash.
    partition(data, "live-2", Some(deleted_id));
    // A deleted topic whose directories were not removed yet.
    partition(data, "gone-0", Some(deleted_id));
    partition(
        data,
        "gone-1.0123456789abcdef0123456789abcdef-delete",
        Some(deleted_id),
    );
    // No topic id and not listed: nobody can tell whose it is.
    partition(data, "unknown-0", None);
    std::fs::write(data.join("not-a-dir-0"), b"").unwrap();

    load_metadata(data, 1, false).unwrap();
    let names = names(data);
    assert_eq!(read_topic_id(&legacy).unwrap(), Some(live_id));
    assert!(names.contains(&"live-0".to_string()));
    assert!(names.contains(&"live-1".to_string()));
    assert!(!names.iter().any(|name| name.starts_with("live-2")));
    assert!(!names.iter().any(|name| name.starts_with("gone-")));
    let strays: Vec<_> = names.iter().filter(|n| n.ends_with("-stray")).collect();
    assert_eq!(strays.len(), 1, "{names:?}");
    assert!(strays[0].starts_with("unknown-0."));
    assert!(names.contains(&"not-a-dir-0".to_string()));
}

#[test]
fn missing_metadata_over_partition_directories_is_refused_then_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let id = Uuid::new_v4();
    partition(data, "orders-0", Some(id));
    partition(data, "orders-2", Some(id));
    partition(data, "__consumer_offsets-0", None);
    let error = load_metadata(data, 2, false).unwrap_err();
    assert!(matches!(
        error,
        DataDirError::UnaccountedData { count: 3, .. }
    ));
    assert!(error.to_string().contains("--recover-unknown-data"));
    assert!(!data.join(METADATA_FILE).exists());

    let metadata = load_metadata(data, 2, true).unwrap();
    assert_eq!(metadata.topics["orders"].id, id);
    assert_eq!(metadata.topics["orders"].partition_count(), 3);
    assert_eq!(
        metadata.topics[OFFSETS_TOPIC].configs,
        crate::internal_topics::topic_configs(OFFSETS_TOPIC).unwrap()
    );
    assert!(metadata.next_producer_id > 1_000_000);
    assert_eq!(
        read_topic_id(&data.join("__consumer_offsets-0")).unwrap(),
        Some(metadata.topics[OFFSETS_TOPIC].id)
    );
    assert_eq!(ClusterMetadata::load_or_create(data).unwrap(), metadata);
}

#[test]
fn the_previous_copy_replaces_a_missing_or_corrupt_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut metadata = ClusterMetadata::new_cluster();
    metadata.topics.insert("t".into(), topic(vec![0]));
    metadata.persist(data).unwrap();
    metadata.next_producer_id = 10;
    metadata.persist(data).unwrap();
    partition(data, "t-0", Some(metadata.topics["t"].id));

    std::fs::write(data.join(METADATA_FILE), "cluster_id = [").unwrap();
    let loaded = load_metadata(data, 1, false).unwrap();
    assert_eq!(loaded.topics, metadata.topics);
    assert_eq!(loaded.next_producer_id, 1, "one past the previous copy's");
    assert!(data.join(format!("{METADATA_FILE}.corrupt")).exists());
    assert!(data.join("t-0").exists(), "the previous copy still owns it");

    std::fs::remove_file(data.join(METADATA_FILE)).unwrap();
    let loaded = load_metadata(data, 1, false).unwrap();
    assert_eq!(loaded.topics, metadata.topics);
    assert!(data.join(METADATA_FILE).exists());
}

#[test]
fn a_corrupt_file_without_a_previous_copy_is_refused_even_without_partitions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(METADATA_FILE), "not toml [").unwrap();
    let error = load_metadata(dir.path(), 1, false).unwrap_err();
    assert!(error.to_string().contains("unreadable"), "{error}");
}

/// The metadata quorum's log directory and `meta.properties` are the quorum's, not partitions: never
/// counted as unaccounted data, moved aside, removed or rebuilt as a topic, whatever they hold.
#[test]
fn the_quorum_log_and_meta_properties_are_left_alone() {
    use crate::meta_properties::{MetaProperties, META_PROPERTIES_FILE};
    use crate::partition_dir::CLUSTER_METADATA_LOG_DIR;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let identity = MetaProperties {
        cluster_id: "MkU3OEVBNTcwNTJENDM2Qk".into(),
        node_id: 1,
    };
    identity.persist(data).unwrap();
    // Without a partition.metadata: would be a stray.
    let quorum_log = partition(data, CLUSTER_METADATA_LOG_DIR, None);
    // A new cluster starts over them (they are not partition directories of an unknown cluster).
    let metadata = load_metadata(data, 1, false).unwrap();
    assert!(metadata.topics.is_empty());
    // With a topic id the metadata does not know (a deleted topic's directory otherwise).
    write_topic_id(&quorum_log, Uuid::new_v4()).unwrap();
    load_metadata(data, 1, false).unwrap();
    // Rebuilding lost metadata does not take the quorum's log for a topic.
    std::fs::remove_file(data.join(METADATA_FILE)).unwrap();
    std::fs::remove_file(data.join(PREVIOUS_METADATA_FILE)).ok();
    let rebuilt = load_metadata(data, 1, true).unwrap();
    assert!(rebuilt.topics.is_empty(), "{:?}", rebuilt.topics.keys());
    assert_eq!(
        names(data),
        vec![
            CLUSTER_METADATA_LOG_DIR.to_string(),
            META_PROPERTIES_FILE.to_string()
        ]
    );
    assert!(quorum_log.join("00000000000000000000.log").exists());
    assert_eq!(MetaProperties::load(data).unwrap(), Some(identity));
}
