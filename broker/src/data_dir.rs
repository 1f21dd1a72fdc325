//! Start-up checks of the data directory: load the cluster metadata and make it fit this process
//! (partitions placed on shards that no longer exist move to the shards that do, and the new placement
//! is persisted before any shard starts).

use crate::metadata::ClusterMetadata;
use std::path::Path;

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot load cluster metadata: {0}")]
    Load(std::io::Error),
    #[error("cannot persist the re-placed cluster metadata: {0}")]
    Persist(std::io::Error),
}

/// Loads (or creates) the cluster metadata of `data_dir` for a process with `shards` shards.
pub fn load_metadata(data_dir: &Path, shards: usize) -> Result<ClusterMetadata, DataDirError> {
    let mut metadata = ClusterMetadata::load_or_create(data_dir).map_err(DataDirError::Load)?;
    fit_to_shards(data_dir, &mut metadata, shards)?;
    Ok(metadata)
}

/// Re-places partitions owned by shards `>= shards` (the data was written by a process with more shards,
/// or the file was edited) and persists the result, so every partition has an owner that exists.
fn fit_to_shards(
    data_dir: &Path,
    metadata: &mut ClusterMetadata,
    shards: usize,
) -> Result<(), DataDirError> {
    let moved = metadata.fit_to_shards(shards);
    if moved > 0 {
        tracing::warn!(
            moved,
            shards,
            "partitions were placed on shards this process does not have; re-placed them"
        );
        metadata.persist(data_dir).map_err(DataDirError::Persist)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::TopicMetadata;
    use std::collections::BTreeMap;
    use uuid::Uuid;

    #[test]
    fn partitions_of_missing_shards_are_re_placed_and_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let mut metadata = ClusterMetadata::new_cluster();
        metadata.topics.insert(
            "t".into(),
            TopicMetadata {
                id: Uuid::new_v4(),
                shards: vec![0, 7, 1, 7],
                configs: BTreeMap::new(),
            },
        );
        metadata.persist(dir.path()).unwrap();
        let loaded = load_metadata(dir.path(), 2).unwrap();
        assert!(loaded.topics["t"].shards.iter().all(|&shard| shard < 2));
        assert_eq!(loaded.topics["t"].shards[..3], [0, 0, 1]);
        let reloaded = ClusterMetadata::load_or_create(dir.path()).unwrap();
        assert_eq!(reloaded.topics["t"].shards, loaded.topics["t"].shards);
    }
}
