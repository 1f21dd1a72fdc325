//! The cleaner's files beside a partition's segments, and completing an interrupted swap when a
//! log is opened.
//!
//! # Names
//! ```text
//! <base>.log.cleaned        a segment being written by the cleaner (also .index / .timeindex)
//! <base>.index.cleaned
//! <base>.timeindex.cleaned
//! <base>.log.swap           the cleaned .log, renamed once all three files were written and fsynced
//! cleaner-offset.checkpoint the first dirty offset: "0\n<offset>\n" (version 0)
//! ```
//!
//! # Swap protocol (one segment at a time; see the module doc of `cleaner`)
//! 1. write `<base>.{log,index,timeindex}.cleaned`, fsync each;
//! 2. rename `<base>.log.cleaned` -> `<base>.log.swap`: the commit point;
//! 3. swap the segment map's entry (the new segment's file is held open, so reads never need the
//!    path while it moves);
//! 4. rename the two index `.cleaned` files over `<base>.index` / `<base>.timeindex`;
//! 5. rename `<base>.log.swap` over `<base>.log` (the old file's inode lives on for reads that
//!    hold it, and is freed when they let go).
//! 6. fsync the directory, so that a crash after the swap cannot bring the removed records back.
//!
//! [`complete_swaps`], run before a log is loaded, finishes steps 4 and 5 for every `.log.swap`
//! (the swap was committed), then removes every `.cleaned` file left (a swap not committed: the
//! old segment is intact). So a crash at any point leaves the old segment or the new one, never a
//! mix of the two; a segment whose index files do not match its `.log` is rebuilt by recovery.

use crate::io::{FileKind, FileSystem, StorageFile};
use crate::segment::{self, INDEX_EXTENSION, LOG_EXTENSION, TIME_INDEX_EXTENSION};
use std::io;
use std::path::{Path, PathBuf};

pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";
pub(crate) const SWAP_SUFFIX: &str = ".swap";
pub const CHECKPOINT_FILE: &str = "cleaner-offset.checkpoint";

/// `<dir>/<base>.<extension><suffix>`.
pub(crate) fn path_with_suffix(dir: &Path, base: i64, extension: &str, suffix: &str) -> PathBuf {
    dir.join(format!("{}{suffix}", segment::file_name(base, extension)))
}

async fn rename_if_present<F: FileSystem>(fs: &F, from: &Path, to: &Path) -> io::Result<()> {
    match fs.rename(from, to).await {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        result => result,
    }
}

/// Completes committed swaps and removes uncommitted cleaner files in `dir` (see the module doc).
/// A missing directory has nothing to complete.
pub(crate) async fn complete_swaps<F: FileSystem>(fs: &F, dir: &Path) -> io::Result<()> {
    let names = match fs.list_dir(dir).await {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        result => result?,
    };
    let names: Vec<String> = names
        .into_iter()
        .filter_map(|name| name.into_string().ok())
        .collect();
    for name in &names {
        let Some(stem) = name.strip_suffix(SWAP_SUFFIX) else {
            continue;
        };
        let Some((base, LOG_EXTENSION)) = segment::parse_file_name(stem) else {
            continue;
        };
        for extension in [INDEX_EXTENSION, TIME_INDEX_EXTENSION] {
            let from = path_with_suffix(dir, base, extension, CLEANED_SUFFIX);
            let to = dir.join(segment::file_name(base, extension));
            rename_if_present(fs, &from, &to).await?;
        }
        let to = dir.join(segment::file_name(base, LOG_EXTENSION));
        fs.rename(&dir.join(name), &to).await?;
        tracing::info!(segment = %to.display(), "completed an interrupted log cleaner swap");
    }
    for name in &names {
        if name.ends_with(CLEANED_SUFFIX) {
            match fs.remove_file(&dir.join(name)).await {
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                result => result?,
            }
        }
    }
    Ok(())
}

/// The first dirty offset recorded in `dir` (`None`: no checkpoint, or an unreadable one).
pub(crate) async fn read_checkpoint<F: FileSystem>(fs: &F, dir: &Path) -> Option<i64> {
    let bytes = fs.read_file(&dir.join(CHECKPOINT_FILE)).await.ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let mut lines = text.lines();
    if lines.next()? != "0" {
        return None;
    }
    lines.next()?.trim().parse().ok()
}

/// Writes the first dirty offset: a temporary file, fsynced, renamed over the checkpoint.
pub(crate) async fn write_checkpoint<F: FileSystem>(
    fs: &F,
    dir: &Path,
    offset: i64,
) -> io::Result<()> {
    let temporary = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    let file = fs.open(&temporary, FileKind::Small, true).await?;
    let text = format!("0\n{offset}\n");
    file.truncate(0).await?;
    file.write_parts_at(0, &[text.as_bytes()], text.len())
        .await?;
    file.sync_data().await?;
    drop(file);
    fs.rename(&temporary, &dir.join(CHECKPOINT_FILE)).await
}
