//! Partition directories: their names, the topic id each one records, and crash-safe deletion.
//!
//! Layout under the data directory:
//!
//! - `<topic>-<partition>/`: a live partition. It holds `partition.metadata` (written atomically right
//!   after the directory is created, before any segment) naming the topic id it belongs to:
//!
//!   ```text
//!   version: 0
//!   topic_id: 7f0c5a2e-1d0b-4c55-9d7e-2b8a8d3c6e10
//!   ```
//!
//!   A directory is served only for the topic id it records, so a directory left behind by a deleted
//!   topic is never mistaken for a re-created topic of the same name.
//! - `<topic>-<partition>.<uuid>-delete/`: a deleted partition, renamed (and the rename fsynced) when its
//!   topic's deletion is applied, then removed in the background. Start-up removes any that are left.
//! - `<topic>-<partition>.<uuid>-stray/`: a directory the metadata could not account for (no topic id, or
//!   found while running on the previous metadata copy), moved aside at start-up and never served or
//!   removed by the broker: an operator looks at it.
//! - `__cluster_metadata-0/`: the metadata quorum's log, which looks like a partition directory but is
//!   not one: it is never taken for a partition, moved aside or removed here ([`DirName::Other`]).
//!   `meta.properties` (the directory's identity) is a file, which the scan skips.

use std::io::Write;
use std::path::{Path, PathBuf};
use uuid::Uuid;

pub const PARTITION_METADATA_FILE: &str = "partition.metadata";
const DELETE_SUFFIX: &str = "-delete";
const STRAY_SUFFIX: &str = "-stray";
const FORMAT_VERSION: &str = "0";
/// The metadata quorum's log directory (Kafka's name: partition 0 of `__cluster_metadata`).
pub const CLUSTER_METADATA_LOG_DIR: &str = "__cluster_metadata-0";

/// What a directory entry's name says it is.
#[derive(Debug, PartialEq, Eq)]
pub enum DirName {
    Partition { topic: String, partition: i32 },
    Deleted,
    Stray,
    Other,
}

/// Classifies a directory name of the data directory.
pub fn parse_dir_name(name: &str) -> DirName {
    if name == CLUSTER_METADATA_LOG_DIR {
        return DirName::Other;
    }
    if name.ends_with(DELETE_SUFFIX) && name.contains('.') {
        return DirName::Deleted;
    }
    if name.ends_with(STRAY_SUFFIX) && name.contains('.') {
        return DirName::Stray;
    }
    let Some((topic, partition)) = name.rsplit_once('-') else {
        return DirName::Other;
    };
    // Only plain decimal digits (no sign, no leading '+'): the form `partition_dir` writes.
    if topic.is_empty() || partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
        return DirName::Other;
    }
    match partition.parse::<i32>() {
        Ok(partition) => DirName::Partition {
            topic: topic.to_string(),
            partition,
        },
        Err(_) => DirName::Other,
    }
}

/// Errors reading a `partition.metadata` file.
#[derive(Debug, thiserror::Error)]
pub enum PartitionMetadataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a partition.metadata file ({reason})")]
    Malformed { path: PathBuf, reason: String },
}

/// The topic id recorded in `dir`, `None` if the directory has no `partition.metadata`.
pub fn read_topic_id(dir: &Path) -> Result<Option<Uuid>, PartitionMetadataError> {
    let path = dir.join(PARTITION_METADATA_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(PartitionMetadataError::Io { path, source }),
    };
    let malformed = |reason: &str| PartitionMetadataError::Malformed {
        path: path.clone(),
        reason: reason.to_string(),
    };
    let mut version = None;
    let mut topic_id = None;
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let (key, value) = line.split_once(':').ok_or_else(|| malformed("no ':'"))?;
        match key.trim() {
            "version" => version = Some(value.trim().to_string()),
            "topic_id" => {
                topic_id = Some(
                    Uuid::parse_str(value.trim()).map_err(|_| malformed("topic_id is no uuid"))?,
                )
            }
            _ => return Err(malformed("unknown key")),
        }
    }
    if version.as_deref() != Some(FORMAT_VERSION) {
        return Err(malformed("unsupported version"));
    }
    topic_id.map(Some).ok_or_else(|| malformed("no topic_id"))
}

/// Records `topic_id` in `dir` atomically (temporary file, fsync, rename, fsync the directory).
pub fn write_topic_id(dir: &Path, topic_id: Uuid) -> std::io::Result<()> {
    let temporary = dir.join(format!("{PARTITION_METADATA_FILE}.tmp"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(format!("version: {FORMAT_VERSION}\ntopic_id: {topic_id}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, dir.join(PARTITION_METADATA_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Renames `dir` to `<name>.<uuid><suffix>` next to it and fsyncs the parent; returns the new path.
fn rename_aside(dir: &Path, suffix: &str) -> std::io::Result<PathBuf> {
    let target = rename_aside_unsynced(dir, suffix)?;
    std::fs::File::open(dir.parent().unwrap_or(Path::new(".")))?.sync_all()?;
    Ok(target)
}

fn rename_aside_unsynced(dir: &Path, suffix: &str) -> std::io::Result<PathBuf> {
    let name = dir
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} has no name", dir.display())))?
        .to_string_lossy()
        .into_owned();
    let parent = dir.parent().unwrap_or(Path::new("."));
    let target = parent.join(format!("{name}.{}{suffix}", Uuid::new_v4().simple()));
    std::fs::rename(dir, &target)?;
    Ok(target)
}

/// Marks a partition directory deleted (see the module docs); remove it with [`remove_in_background`].
pub fn mark_deleted(dir: &Path) -> std::io::Result<PathBuf> {
    rename_aside(dir, DELETE_SUFFIX)
}

/// Marks many partition directories of `data_dir` deleted with one fsync of it (a topic with thousands
/// of partitions). Returns the marked paths; a directory that cannot be renamed is logged and left (its
/// recorded topic id no longer matches the metadata, so the next start removes it).
pub fn mark_all_deleted(data_dir: &Path, dirs: &[PathBuf]) -> Vec<PathBuf> {
    let marked: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|dir| match rename_aside_unsynced(dir, DELETE_SUFFIX) {
            Ok(marked) => Some(marked),
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "cannot mark a partition directory deleted");
                None
            }
        })
        .collect();
    if !marked.is_empty() {
        if let Err(error) = std::fs::File::open(data_dir).and_then(|handle| handle.sync_all()) {
            tracing::warn!(dir = %data_dir.display(), %error, "cannot fsync the data directory");
        }
    }
    marked
}

/// Moves a directory the metadata cannot account for aside, where nothing will serve or remove it.
pub fn mark_stray(dir: &Path) -> std::io::Result<PathBuf> {
    rename_aside(dir, STRAY_SUFFIX)
}

/// Removes directories already marked deleted on a plain thread, so a shard never blocks on it. A crash
/// before it finishes leaves `-delete` directories that the next start removes.
pub fn remove_in_background(dirs: Vec<PathBuf>) {
    if dirs.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("partition-delete".into())
        .spawn(move || remove_all(&dirs));
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the deletion thread; marked directories stay until the next start");
    }
}

/// Removes marked directories now (start-up).
pub fn remove_all(dirs: &[PathBuf]) {
    for dir in dirs {
        if let Err(error) = std::fs::remove_dir_all(dir) {
            tracing::warn!(dir = %dir.display(), %error, "cannot remove a deleted partition directory");
        }
    }
}

/// Makes `dir` the directory of topic `topic_id`'s partition: creates it and records the id, or checks
/// the id an existing one records. A directory recording another id (left by a deleted topic of the same
/// name) is never adopted: it is marked deleted and a fresh one is made. Start-up has already reconciled
/// the data directory, so that happens only if something slipped past it.
pub fn claim_partition_dir(dir: &std::path::Path, topic_id: uuid::Uuid) -> Result<(), String> {
    let describe = |error: std::io::Error| format!("{}: {error}", dir.display());
    if dir.exists() {
        match read_topic_id(dir) {
            Ok(Some(recorded)) if recorded == topic_id => return Ok(()),
            // Listed by the metadata and without an id: start-up records ids; a crash right after mkdir.
            Ok(None) => return write_topic_id(dir, topic_id).map_err(describe),
            Ok(Some(recorded)) => {
                tracing::warn!(dir = %dir.display(), %recorded, %topic_id, "partition directory of another topic id; not adopting it");
                let marked = mark_deleted(dir).map_err(describe)?;
                remove_in_background(vec![marked]);
            }
            Err(error) => {
                tracing::warn!(%error, "unreadable partition.metadata; moving the directory aside");
                mark_stray(dir).map_err(describe)?;
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(describe)?;
    write_topic_id(dir, topic_id).map_err(describe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_classified() {
        assert_eq!(
            parse_dir_name("my-topic.v2-12"),
            DirName::Partition {
                topic: "my-topic.v2".into(),
                partition: 12
            }
        );
        assert_eq!(
            parse_dir_name("t-0.0123456789abcdef0123456789abcdef-delete"),
            DirName::Deleted
        );
        assert_eq!(
            parse_dir_name("t-0.0123456789abcdef0123456789abcdef-stray"),
            DirName::Stray
        );
        // A topic may be named "...-delete" itself: its partitions still parse as partitions.
        assert_eq!(
            parse_dir_name("x-delete-3"),
            DirName::Partition {
                topic: "x-delete".into(),
                partition: 3
            }
        );
        for other in [
            "cluster_metadata.toml",
            "__cluster_metadata-0",
            "t-",
            "-1",
            "t-+1",
            "t-99999999999",
            "t",
        ] {
            assert_eq!(parse_dir_name(other), DirName::Other, "{other}");
        }
    }

    #[test]
    fn topic_id_round_trips_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_topic_id(dir.path()).unwrap(), None);
        let id = Uuid::new_v4();
        write_topic_id(dir.path(), id).unwrap();
        assert_eq!(read_topic_id(dir.path()).unwrap(), Some(id));
        std::fs::write(dir.path().join(PARTITION_METADATA_FILE), "version: 9\n").unwrap();
        assert!(read_topic_id(dir.path()).is_err());
        std::fs::write(dir.path().join(PARTITION_METADATA_FILE), "\u{0}\u{1}").unwrap();
        assert!(read_topic_id(dir.path()).is_err());
    }

    #[test]
    fn marked_directories_are_renamed_then_removed() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("t-0");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("00000000000000000000.log"), b"x").unwrap();
        let marked = mark_deleted(&dir).unwrap();
        assert!(!dir.exists());
        let name = marked.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_dir_name(name), DirName::Deleted);
        remove_all(std::slice::from_ref(&marked));
        assert!(!marked.exists());
    }
}
