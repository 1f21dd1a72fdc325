//! The file layer: the only way storage touches files and directories.
//!
//! Storage is runtime-agnostic. It reads and writes through [`FileSystem`] / [`StorageFile`], and the
//! broker injects an implementation: `shard::dma::DmaFileSystem` (glommio, io_uring, O_DIRECT for
//! segment data) in production, [`StdFileSystem`] (std::fs, page cache) in tests and as the buffered
//! mode. Tests may wrap either to inject torn writes, crashes and failing directory operations.
//!
//! Directory and whole-file operations (create a directory, list one, remove, rename, size, read a
//! small file whole) are [`FileSystem`] methods too, so that fault injection reaches snapshot and
//! directory I/O. They are rare metadata work: both implementations run them as `std::fs` calls
//! (briefly blocking). Their default implementations are [`StdFileSystem`]'s, so a wrapper that only
//! changes file contents need not repeat them; a wrapper injecting directory faults overrides them.
//!
//! All methods run on one thread (a shard's executor): futures need not be `Send`.
#![allow(async_fn_in_trait)]

use bytes::Bytes;
use std::cell::RefCell;
use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// What a file holds; an implementation may choose a different I/O mode per kind
/// (the DMA file system uses O_DIRECT for `SegmentData` only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// `.log` segment files: large sequential appends, the hot path.
    SegmentData,
    /// `.index`, `.timeindex`, snapshots, checkpoints: small files.
    Small,
}

pub trait FileSystem: Clone + 'static {
    type File: StorageFile;
    /// Opens `path`, creating it (empty) when `create` is set and it does not exist.
    async fn open(&self, path: &Path, kind: FileKind, create: bool) -> io::Result<Self::File>;

    /// Creates `path` and any missing parents (nothing when it exists).
    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFileSystem.create_dir_all(path).await
    }
    /// The names of the entries of the directory `path` (any order; no `.` or `..`).
    async fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        StdFileSystem.list_dir(path).await
    }
    /// Removes the file `path` (`NotFound` when there is none).
    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFileSystem.remove_file(path).await
    }
    /// Removes the directory `path` and everything in it (`NotFound` when there is none).
    async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFileSystem.remove_dir_all(path).await
    }
    /// Renames `from` to `to`, replacing `to` (atomic within a file system).
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFileSystem.rename(from, to).await
    }
    /// The size of the file `path`, without opening it.
    async fn file_size(&self, path: &Path) -> io::Result<u64> {
        StdFileSystem.file_size(path).await
    }
    /// The whole contents of the (small) file `path`.
    async fn read_file(&self, path: &Path) -> io::Result<Bytes> {
        StdFileSystem.read_file(path).await
    }
    /// fsyncs the directory `path`, making the entries created, renamed or removed in it durable.
    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        StdFileSystem.sync_dir(path).await
    }
}

pub trait StorageFile: 'static {
    /// Writes must start at a multiple of this and have a length that is a multiple of it
    /// (1 for buffered files, typically 4096 for O_DIRECT files).
    fn write_alignment(&self) -> usize;
    /// Reads up to `len` bytes at `pos`; fewer only at end of file.
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes>;
    /// Writes the concatenation of `parts` at `pos`, followed by zeros up to `len` bytes in all
    /// (`pos` and `len` aligned per [`StorageFile::write_alignment`]). A gather write: an O_DIRECT
    /// implementation copies the parts once, into its aligned buffer, and that is the only copy of
    /// record data between the request buffer and the disk.
    async fn write_parts_at(&self, pos: u64, parts: &[&[u8]], len: usize) -> io::Result<()>;
    /// fdatasync.
    async fn sync_data(&self) -> io::Result<()>;
    async fn truncate(&self, len: u64) -> io::Result<()>;
    async fn size(&self) -> io::Result<u64>;
    /// Reserves space without changing the visible size (a hint; may do nothing).
    /// Allocates `[offset, offset + len)` with blocks that read as zeros, growing the file's visible
    /// size to at least `offset + len` (fallocate without KEEP_SIZE). For O_DIRECT segment files, so
    /// that appends land inside the file (see `appender`); others may do nothing.
    async fn allocate(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
    async fn preallocate(&self, _len: u64) -> io::Result<()> {
        Ok(())
    }
    /// Starts reading `len` bytes at `pos` (all within the file) in the background and returns at
    /// once: the read goes
    /// on while the caller does other work, and its result is taken from the [`BackgroundRead`]
    /// (read-ahead, `read_ahead.rs`). `None` where the implementation cannot read in the background
    /// (buffered files, whose page cache reads ahead by itself): the caller then reads when it needs
    /// the data.
    fn start_read(&self, _pos: u64, _len: usize) -> Option<BackgroundRead> {
        None
    }
}

/// A read started by [`StorageFile::start_read`]: completed once by its [`ReadCompletion`], then
/// taken any number of times (the bytes are shared, not copied).
#[derive(Clone)]
pub struct BackgroundRead {
    slot: Rc<RefCell<ReadSlot>>,
}

/// The side of a [`BackgroundRead`] held by the I/O that performs it.
pub struct ReadCompletion {
    slot: Rc<RefCell<ReadSlot>>,
}

enum ReadSlot {
    Pending(Vec<Waker>),
    Done(Result<Bytes, io::ErrorKind>),
}

impl BackgroundRead {
    /// A read not yet done, and the handle that completes it.
    pub fn pending() -> (BackgroundRead, ReadCompletion) {
        let slot = Rc::new(RefCell::new(ReadSlot::Pending(Vec::new())));
        (
            BackgroundRead { slot: slot.clone() },
            ReadCompletion { slot },
        )
    }

    /// A read that is already done.
    pub fn done(result: io::Result<Bytes>) -> BackgroundRead {
        BackgroundRead {
            slot: Rc::new(RefCell::new(ReadSlot::Done(
                result.map_err(|error| error.kind()),
            ))),
        }
    }

    /// The result, once the read is done.
    pub fn try_result(&self) -> Option<io::Result<Bytes>> {
        match &*self.slot.borrow() {
            ReadSlot::Pending(_) => None,
            ReadSlot::Done(result) => Some(result.clone().map_err(io::Error::from)),
        }
    }

    /// Waits for the read to be done (any number of tasks may wait for one read).
    pub async fn result(&self) -> io::Result<Bytes> {
        std::future::poll_fn(|context| match &mut *self.slot.borrow_mut() {
            ReadSlot::Pending(wakers) => {
                if !wakers.iter().any(|waker| waker.will_wake(context.waker())) {
                    wakers.push(context.waker().clone());
                }
                Poll::Pending
            }
            ReadSlot::Done(result) => Poll::Ready(result.clone().map_err(io::Error::from)),
        })
        .await
    }
}

impl ReadCompletion {
    /// Records the result and wakes every task waiting for it.
    pub fn complete(self, result: io::Result<Bytes>) {
        let done = ReadSlot::Done(result.map_err(|error| error.kind()));
        let previous = std::mem::replace(&mut *self.slot.borrow_mut(), done);
        if let ReadSlot::Pending(wakers) = previous {
            for waker in wakers {
                waker.wake();
            }
        }
    }
}

impl Drop for ReadCompletion {
    /// A read dropped before completing (its task cancelled) fails rather than leaving waiters hanging.
    fn drop(&mut self) {
        let pending = matches!(&*self.slot.borrow(), ReadSlot::Pending(_));
        if pending {
            let previous = std::mem::replace(
                &mut *self.slot.borrow_mut(),
                ReadSlot::Done(Err(io::ErrorKind::Interrupted)),
            );
            if let ReadSlot::Pending(wakers) = previous {
                for waker in wakers {
                    waker.wake();
                }
            }
        }
    }
}

/// Buffered files through `std::fs` (page cache). The calls block briefly; acceptable for tests and the
/// buffered fallback mode.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdFileSystem;

pub struct StdFile {
    file: std::fs::File,
}

impl FileSystem for StdFileSystem {
    type File = StdFile;
    async fn open(&self, path: &Path, _kind: FileKind, create: bool) -> io::Result<StdFile> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(StdFile { file })
    }
    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    async fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        std::fs::read_dir(path)?
            .map(|entry| entry.map(|entry| entry.file_name()))
            .collect()
    }
    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    async fn file_size(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }
    async fn read_file(&self, path: &Path) -> io::Result<Bytes> {
        std::fs::read(path).map(Bytes::from)
    }
    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }
}

impl StorageFile for StdFile {
    fn write_alignment(&self) -> usize {
        1
    }
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        use std::os::unix::fs::FileExt;
        let mut buffer = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            let read = self
                .file
                .read_at(&mut buffer[filled..], pos + filled as u64)?;
            if read == 0 {
                break;
            }
            filled += read;
        }
        buffer.truncate(filled);
        Ok(Bytes::from(buffer))
    }
    async fn write_parts_at(&self, pos: u64, parts: &[&[u8]], len: usize) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        if let [only] = parts {
            if only.len() == len {
                return self.file.write_all_at(only, pos);
            }
        }
        // One write call, not one per part: each call is a blocking syscall on the executor thread, and
        // an index flush can hold hundreds of 12-byte entries.
        let mut joined = Vec::with_capacity(len);
        for part in parts {
            joined.extend_from_slice(part);
        }
        joined.resize(len.max(joined.len()), 0);
        self.file.write_all_at(&joined, pos)
    }
    async fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    async fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}
