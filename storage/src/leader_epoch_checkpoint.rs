//! The leader-epoch checkpoint of one partition (Kafka's `leader-epoch-checkpoint`): the entries
//! of the leader-epoch cache (`leader_epoch_cache`), read when the log opens and rewritten whenever
//! the cache changes.
//!
//! # Format
//! `<dir>/leader-epoch-checkpoint`, ASCII text, Kafka's layout, every line ended by `\n`:
//! ```text
//! 0          the format version
//! 2          the number of entries
//! 0 0        an entry: leader epoch, start offset (decimal, one space between)
//! 3 1200
//! ```
//! Entries are in cache order (epochs strictly increasing, start offsets non-decreasing, none
//! negative); a file breaking that, with a wrong count or any other damage does not parse.
//!
//! # Durability
//! As `log_start_checkpoint`: [`write`] writes `leader-epoch-checkpoint.tmp`, fsyncs it, renames it
//! over the checkpoint and fsyncs the directory, so a crash leaves the old or the new entries. A
//! missing file is an empty cache; a file that does not parse is ignored (with a warning), also an
//! empty cache (the next epoch change writes a new file).

use crate::io::{FileKind, FileSystem, StorageFile};
use crate::leader_epoch_cache::LeaderEpochCache;
use crate::segment;
use crate::types::{LeaderEpoch, Offset};
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The checkpoint's file name in the partition directory.
pub(crate) const FILE_NAME: &str = "leader-epoch-checkpoint";
/// The name it is written under before the rename.
const TEMPORARY_FILE_NAME: &str = "leader-epoch-checkpoint.tmp";
const VERSION: i64 = 0;

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// The checkpointed entries of the log in `dir`; empty when there is no (usable) file.
pub(crate) async fn read<F: FileSystem>(
    fs: &F,
    dir: &Path,
) -> io::Result<Vec<(LeaderEpoch, Offset)>> {
    let bytes = match fs.read_file(&path(dir)).await {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    Ok(decode(&bytes).unwrap_or_else(|| {
        tracing::warn!(dir = %dir.display(), "unreadable leader epoch checkpoint ignored");
        Vec::new()
    }))
}

/// Replaces the checkpoint of the log in `dir` with `entries`, durably (see the module doc).
pub(crate) async fn write<F: FileSystem>(
    fs: &F,
    dir: &Path,
    entries: &[(LeaderEpoch, Offset)],
) -> io::Result<()> {
    let temporary = dir.join(TEMPORARY_FILE_NAME);
    let file = Rc::new(fs.open(&temporary, FileKind::Small, true).await?);
    let appender = segment::write_whole(file.clone(), encode(entries).as_bytes()).await?;
    drop(appender);
    file.sync_data().await?;
    drop(file);
    fs.rename(&temporary, &path(dir)).await?;
    fs.sync_dir(dir).await
}

fn encode(entries: &[(LeaderEpoch, Offset)]) -> String {
    let mut text = format!("{VERSION}\n{}\n", entries.len());
    for (epoch, offset) in entries {
        writeln!(text, "{epoch} {offset}").expect("writing to a String");
    }
    text
}

fn decode(bytes: &[u8]) -> Option<Vec<(LeaderEpoch, Offset)>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.strip_suffix('\n')?.split('\n');
    let version: i64 = lines.next()?.parse().ok()?;
    let count: usize = lines.next()?.parse().ok()?;
    if version != VERSION {
        return None;
    }
    let mut entries = Vec::with_capacity(count.min(1024));
    for line in lines {
        let (epoch, offset) = line.split_once(' ')?;
        entries.push((
            LeaderEpoch(epoch.parse().ok()?),
            Offset(offset.parse().ok()?),
        ));
    }
    (entries.len() == count && LeaderEpochCache::valid(&entries)).then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::StdFileSystem;
    use futures_lite::future::block_on;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert!(block_on(read(&StdFileSystem, dir.path()))
            .unwrap()
            .is_empty());
        let entries = vec![(LeaderEpoch(0), Offset(0)), (LeaderEpoch(3), Offset(1200))];
        block_on(write(&StdFileSystem, dir.path(), &entries)).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap(),
            "0\n2\n0 0\n3 1200\n"
        );
        assert_eq!(block_on(read(&StdFileSystem, dir.path())).unwrap(), entries);
        block_on(write(&StdFileSystem, dir.path(), &[])).unwrap();
        assert!(block_on(read(&StdFileSystem, dir.path()))
            .unwrap()
            .is_empty());
        assert!(!dir.path().join(TEMPORARY_FILE_NAME).exists());
        for damaged in [
            "",
            "0\n",
            "0\n1\n",
            "0\n1\n1 5",
            "1\n1\n1 5\n",
            "0\n2\n1 5\n",
            "0\n1\n1 5\n2 6\n",
            "0\n2\n2 5\n1 6\n",
            "0\n2\n1 6\n2 5\n",
            "0\n1\n-1 5\n",
            "0\n1\n1 -5\n",
            "0\n1\n1  5\n",
            "x\n1\n1 5\n",
        ] {
            std::fs::write(dir.path().join(FILE_NAME), damaged).unwrap();
            assert!(
                block_on(read(&StdFileSystem, dir.path()))
                    .unwrap()
                    .is_empty(),
                "{damaged:?}"
            );
        }
    }
}
