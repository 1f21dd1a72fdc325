//! The log-start-offset checkpoint of one partition (Kafka's `log-start-offset-checkpoint`).
//!
//! DeleteRecords can move a partition's log start offset inside a segment; the segment files cannot
//! say so, so the offset is kept in a small file in the partition directory and read back when the
//! log opens (`loader`): `log start = max(first segment base, checkpoint)`, clamped to the log end.
//!
//! # Format
//! `<dir>/log-start-offset.checkpoint`, ASCII text, two lines, each ended by `\n`:
//! ```text
//! 0          the format version
//! 1234       the log start offset, decimal
//! ```
//! Kafka keeps one such file per data directory listing every partition (`topic partition offset`
//! lines). Here each partition has its own: partitions live on different shards (threads), and a
//! shared file would need cross-shard coordination for every DeleteRecords; a per-partition file is
//! written by its owning shard alone.
//!
//! # Durability
//! [`write`] writes `log-start-offset.checkpoint.tmp`, fsyncs it, renames it over the checkpoint and
//! fsyncs the directory, so a crash (kill -9, power loss) leaves either the old or the new value,
//! never a torn one. A caller acknowledges a new log start only after [`write`] returned. A file that
//! does not parse is ignored (with a warning): the log then starts at its first segment's base.

use crate::io::{FileKind, FileSystem, StorageFile};
use crate::segment;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The checkpoint's file name in the partition directory.
pub(crate) const FILE_NAME: &str = "log-start-offset.checkpoint";
/// The name it is written under before the rename.
const TEMPORARY_FILE_NAME: &str = "log-start-offset.checkpoint.tmp";
const VERSION: i64 = 0;

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// The checkpointed log start offset of the log in `dir`; `None` when there is no (usable) file.
pub(crate) async fn read<F: FileSystem>(fs: &F, dir: &Path) -> io::Result<Option<i64>> {
    let bytes = match fs.read_file(&path(dir)).await {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let parsed = decode(&bytes);
    if parsed.is_none() {
        tracing::warn!(dir = %dir.display(), "unreadable log start offset checkpoint ignored");
    }
    Ok(parsed)
}

/// Replaces the checkpoint of the log in `dir` with `offset`, durably (see the module doc).
pub(crate) async fn write<F: FileSystem>(fs: &F, dir: &Path, offset: i64) -> io::Result<()> {
    let temporary = dir.join(TEMPORARY_FILE_NAME);
    let file = Rc::new(fs.open(&temporary, FileKind::Small, true).await?);
    let appender = segment::write_whole(file.clone(), encode(offset).as_bytes()).await?;
    drop(appender);
    file.sync_data().await?;
    drop(file);
    fs.rename(&temporary, &path(dir)).await?;
    fs.sync_dir(dir).await
}

fn encode(offset: i64) -> String {
    format!("{VERSION}\n{offset}\n")
}

fn decode(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.strip_suffix('\n')?.split('\n');
    let version: i64 = lines.next()?.parse().ok()?;
    let offset: i64 = lines.next()?.parse().ok()?;
    (version == VERSION && lines.next().is_none() && offset >= 0).then_some(offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::StdFileSystem;
    use futures_lite::future::block_on;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(block_on(read(&StdFileSystem, dir.path())).unwrap(), None);
        block_on(write(&StdFileSystem, dir.path(), 1234)).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap(),
            "0\n1234\n"
        );
        block_on(write(&StdFileSystem, dir.path(), 99)).unwrap();
        assert_eq!(
            block_on(read(&StdFileSystem, dir.path())).unwrap(),
            Some(99)
        );
        assert!(!dir.path().join(TEMPORARY_FILE_NAME).exists());
        for damaged in [
            "",
            "0\n",
            "0\n12",
            "1\n12\n",
            "0\n-5\n",
            "0\n1\n2\n",
            "x\n1\n",
        ] {
            std::fs::write(dir.path().join(FILE_NAME), damaged).unwrap();
            assert_eq!(block_on(read(&StdFileSystem, dir.path())).unwrap(), None);
        }
    }
}
