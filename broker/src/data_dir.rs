//! Start-up checks of the data directory, before any shard starts:
//!
//! 1. Load the cluster metadata: `cluster_metadata.toml`, else (missing or unreadable, with a WARN) the
//!    previous copy `cluster_metadata.toml.prev`. With neither, a new cluster is started only over a
//!    directory holding no partition directories; otherwise the broker refuses to start, unless asked to
//!    rebuild the metadata from the partition directories (`--recover-unknown-data`).
//! 2. Fit the metadata to this process: partitions placed on shards that no longer exist move to the
//!    shards that do, and the new placement is persisted.
//! 3. Reconcile the partition directories with the metadata (see `partition_dir` for the layout): remove
//!    directories marked deleted, remove directories of topics the metadata deleted (their recorded topic
//!    id is unknown), record the topic id in listed directories that lack one, and move anything else the
//!    metadata cannot account for aside as `-stray`. Nothing is ever served from a directory the
//!    metadata does not own.

use crate::config::validate_topic_name;
use crate::control::MAX_PARTITIONS_PER_TOPIC;
use crate::internal_topics;
use crate::metadata::{ClusterMetadata, TopicMetadata, METADATA_FILE, PREVIOUS_METADATA_FILE};
use crate::partition_dir::{self, parse_dir_name, DirName};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot load cluster metadata: {0}")]
    Load(std::io::Error),
    #[error("cannot persist the cluster metadata: {0}")]
    Persist(std::io::Error),
    #[error("cannot read data directory {dir}: {source}")]
    Scan {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot {action} {dir}: {source}")]
    Reconcile {
        action: &'static str,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "data directory {dir} holds {count} partition directories (e.g. {example}) but no usable \
         {METADATA_FILE} (nor {PREVIOUS_METADATA_FILE}){reason}; refusing to start a new cluster over \
         data it cannot account for. Restore the metadata file, or start with --recover-unknown-data \
         (TOML: recover_unknown_data = true) to rebuild the metadata from the partition directories \
         (topic configs other than __consumer_offsets' are lost; see README)"
    )]
    UnaccountedData {
        dir: PathBuf,
        count: usize,
        example: String,
        reason: String,
    },
}

/// Where the metadata came from; decides how much the reconciliation may trust it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Current,
    Previous,
    NewCluster,
    Recovered,
}

/// Loads the cluster metadata of `data_dir` for a process with `shards` shards and reconciles the
/// partition directories with it (module docs).
pub fn load_metadata(
    data_dir: &Path,
    shards: usize,
    recover_unknown_data: bool,
) -> Result<ClusterMetadata, DataDirError> {
    let (mut metadata, source) = load_or_recover(data_dir, shards, recover_unknown_data)?;
    fit_to_shards(data_dir, &mut metadata, shards)?;
    reconcile(data_dir, &metadata, source == Source::Current)?;
    Ok(metadata)
}

fn load_or_recover(
    data_dir: &Path,
    shards: usize,
    recover_unknown_data: bool,
) -> Result<(ClusterMetadata, Source), DataDirError> {
    let current_path = data_dir.join(METADATA_FILE);
    let reason = match ClusterMetadata::load_file(&current_path) {
        Ok(Some(metadata)) => return Ok((metadata, Source::Current)),
        Ok(None) => String::new(),
        Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
            // Keep the unreadable file for a post-mortem, out of persist's way.
            let aside = data_dir.join(format!("{METADATA_FILE}.corrupt"));
            std::fs::rename(&current_path, &aside).map_err(DataDirError::Load)?;
            tracing::warn!(%error, moved_to = %aside.display(), "the cluster metadata file is unreadable");
            format!(" ({METADATA_FILE} is unreadable: {error})")
        }
        Err(error) => return Err(DataDirError::Load(error)),
    };
    match ClusterMetadata::load_file(&data_dir.join(PREVIOUS_METADATA_FILE)) {
        Ok(Some(mut metadata)) => {
            tracing::warn!(
                "{METADATA_FILE} is missing or unreadable; starting from the previous copy \
                 {PREVIOUS_METADATA_FILE} (the last metadata change may be lost)"
            );
            // The lost version may have handed out one more producer id.
            metadata.next_producer_id += 1;
            metadata.persist(data_dir).map_err(DataDirError::Persist)?;
            return Ok((metadata, Source::Previous));
        }
        Ok(None) => {}
        Err(error) => tracing::warn!(%error, "the previous metadata copy is unreadable too"),
    }
    let partitions = scan_partition_dirs(data_dir)?;
    if partitions.is_empty() && reason.is_empty() {
        let metadata = ClusterMetadata::new_cluster();
        metadata.persist(data_dir).map_err(DataDirError::Persist)?;
        tracing::info!(cluster_id = %metadata.cluster_id, "new cluster");
        return Ok((metadata, Source::NewCluster));
    }
    if !recover_unknown_data {
        return Err(DataDirError::UnaccountedData {
            dir: data_dir.to_path_buf(),
            count: partitions.len(),
            example: partitions
                .first()
                .map(|(path, _, _)| path.display().to_string())
                .unwrap_or_else(|| "none".into()),
            reason,
        });
    }
    let metadata = rebuild(&partitions, shards);
    tracing::warn!(
        topics = ?metadata.topics.keys().collect::<Vec<_>>(),
        partitions = partitions.len(),
        "recover_unknown_data: rebuilt the cluster metadata from the partition directories \
         (new cluster id, default topic configs)"
    );
    metadata.persist(data_dir).map_err(DataDirError::Persist)?;
    Ok((metadata, Source::Recovered))
}

/// Every `<topic>-<partition>` directory: (path, topic, partition).
fn scan_partition_dirs(data_dir: &Path) -> Result<Vec<(PathBuf, String, i32)>, DataDirError> {
    let scan_error = |source| DataDirError::Scan {
        dir: data_dir.to_path_buf(),
        source,
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(data_dir).map_err(scan_error)? {
        let entry = entry.map_err(scan_error)?;
        if !entry.file_type().map_err(scan_error)?.is_dir() {
            continue;
        }
        if let DirName::Partition { topic, partition } =
            parse_dir_name(&entry.file_name().to_string_lossy())
        {
            found.push((entry.path(), topic, partition));
        }
    }
    found.sort();
    Ok(found)
}

/// Metadata that owns the partition directories found: each topic with as many partitions as its highest
/// directory implies (missing ones are created empty), the topic id most of its directories record (a
/// new one if none does), default configs (`__consumer_offsets` gets its own), balanced placement.
/// Producer ids continue from the current time in milliseconds, past any id handed out before.
fn rebuild(partitions: &[(PathBuf, String, i32)], shards: usize) -> ClusterMetadata {
    let mut topics: BTreeMap<&str, (i32, BTreeMap<Uuid, usize>)> = BTreeMap::new();
    for (path, topic, partition) in partitions {
        if validate_topic_name(topic).is_err() || *partition >= MAX_PARTITIONS_PER_TOPIC {
            continue;
        }
        let entry = topics.entry(topic).or_default();
        entry.0 = entry.0.max(*partition + 1);
        if let Ok(Some(id)) = partition_dir::read_topic_id(path) {
            *entry.1.entry(id).or_default() += 1;
        }
    }
    let mut metadata = ClusterMetadata::new_cluster();
    metadata.next_producer_id = shard::task::wall_clock_ms();
    for (name, (count, ids)) in topics {
        let id = ids
            .into_iter()
            .max_by_key(|&(_, votes)| votes)
            .map(|(id, _)| id)
            .unwrap_or_else(Uuid::new_v4);
        let configs = internal_topics::topic_configs(name).unwrap_or_default();
        let shards = metadata.place_partitions(shards, count as usize);
        metadata.topics.insert(
            name.to_string(),
            TopicMetadata {
                id,
                shards,
                configs,
                partitions: Vec::new(),
            },
        );
    }
    metadata
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

/// What to do with one partition directory.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Keep,
    /// Listed, but no topic id recorded yet (written before ids were, or a crash right after mkdir).
    RecordId(Uuid),
    Delete,
    Stray,
}

/// `listed`: the id of the topic owning this directory's name in the metadata, if it lists the partition.
/// `trust_deletions`: the metadata is the current file, so a recorded id it does not know was deleted.
fn verdict(
    metadata: &ClusterMetadata,
    listed: Option<Uuid>,
    recorded: Result<Option<Uuid>, ()>,
    trust_deletions: bool,
) -> Verdict {
    match (listed, recorded) {
        (Some(id), Ok(Some(recorded))) if id == recorded => Verdict::Keep,
        (Some(id), Ok(None)) => Verdict::RecordId(id),
        // A directory of a deleted topic, or of an earlier topic with this name.
        (_, Ok(Some(recorded))) if trust_deletions && metadata.topic_by_id(recorded).is_none() => {
            Verdict::Delete
        }
        _ => Verdict::Stray,
    }
}

fn reconcile(
    data_dir: &Path,
    metadata: &ClusterMetadata,
    trust_deletions: bool,
) -> Result<(), DataDirError> {
    let scan_error = |source| DataDirError::Scan {
        dir: data_dir.to_path_buf(),
        source,
    };
    let mut marked = Vec::new();
    let mut deleted_topic_dirs = Vec::new();
    let mut strays = 0usize;
    for entry in std::fs::read_dir(data_dir).map_err(scan_error)? {
        let entry = entry.map_err(scan_error)?;
        if !entry.file_type().map_err(scan_error)?.is_dir() {
            continue;
        }
        let path = entry.path();
        let (topic, partition) = match parse_dir_name(&entry.file_name().to_string_lossy()) {
            DirName::Deleted => {
                marked.push(path);
                continue;
            }
            DirName::Stray => {
                strays += 1;
                continue;
            }
            DirName::Other => continue,
            DirName::Partition { topic, partition } => (topic, partition),
        };
        let listed = metadata
            .topics
            .get(&topic)
            .filter(|owner| partition < owner.partition_count())
            .map(|owner| owner.id);
        let recorded = partition_dir::read_topic_id(&path).map_err(|error| {
            tracing::warn!(%error, "unreadable partition.metadata");
        });
        let failed = |action, source| DataDirError::Reconcile {
            action,
            dir: path.clone(),
            source,
        };
        match verdict(metadata, listed, recorded, trust_deletions) {
            Verdict::Keep => {}
            Verdict::RecordId(id) => {
                partition_dir::write_topic_id(&path, id)
                    .map_err(|source| failed("record the topic id in", source))?;
                tracing::info!(dir = %path.display(), %id, "recorded the topic id of a partition directory");
            }
            Verdict::Delete => {
                tracing::debug!(dir = %path.display(), "directory of a deleted topic");
                deleted_topic_dirs.push(path);
            }
            Verdict::Stray => {
                let aside = partition_dir::mark_stray(&path)
                    .map_err(|source| failed("move aside", source))?;
                tracing::warn!(
                    dir = %path.display(),
                    moved_to = %aside.display(),
                    "the metadata does not account for this partition directory; moved it aside (not served)"
                );
                strays += 1;
            }
        }
    }
    if !deleted_topic_dirs.is_empty() {
        tracing::info!(
            count = deleted_topic_dirs.len(),
            "removing partition directories of deleted topics (a deletion the last run did not finish)"
        );
        marked.extend(partition_dir::mark_all_deleted(
            data_dir,
            &deleted_topic_dirs,
        ));
    }
    if !marked.is_empty() {
        tracing::info!(
            count = marked.len(),
            "removing partition directories marked deleted"
        );
        partition_dir::remove_all(&marked);
    }
    if strays > 0 {
        tracing::warn!(
            count = strays,
            "stray partition directories (*-stray) in the data directory: not served; inspect and remove them"
        );
    }
    Ok(())
}

#[cfg(test)]
#[path = "data_dir_tests.rs"]
mod tests;
