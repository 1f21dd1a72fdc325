//! The storage file layer on glommio.
//!
//! Segment data (`FileKind::SegmentData`) is opened with O_DIRECT as a glommio `DmaFile`: writes go from
//! aligned DMA buffers straight to the device through io_uring, bypassing the page cache, so they must be
//! aligned (storage's segment appender handles that, see `write_alignment`). Where the file system refuses
//! O_DIRECT (tmpfs, some overlay set-ups) — or when the broker runs in buffered mode — segment data falls back
//! to buffered files. Small files (indexes, snapshots) are always buffered.
//!
//! Directory and whole-file operations (create, list, remove, rename, size, read a snapshot) are rare
//! metadata work: they run as blocking `std::fs` calls on the shard, as `StdFileSystem` runs them
//! (glommio has no asynchronous directory listing, and these take microseconds on a local disk).

use bytes::Bytes;
use glommio::io::{DmaFile, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::rc::Rc;
use storage::io::{BackgroundRead, FileKind, FileSystem, StdFile, StdFileSystem, StorageFile};

#[derive(Clone, Copy, Debug)]
pub struct DmaFileSystem {
    /// O_DIRECT for segment data; false = buffered mode.
    pub direct: bool,
}

impl DmaFileSystem {
    /// Prepares O_DIRECT use under `dir` on the calling shard (`shard` names its probe file); returns whether O_DIRECT is usable there.
    ///
    /// glommio decides once per block device whether reads may use the polled (IOPOLL) ring, by reading
    /// the first block of the first file it opens on that device. On a new, empty file that read "succeeds"
    /// at end of file, glommio concludes the device supports polling, and every later O_DIRECT read on that
    /// device fails with EOPNOTSUPP (seen on virtio disks). Opening a file that holds a whole block first
    /// makes the probe read real data and answer correctly.
    pub async fn prepare(dir: &Path, shard: usize) -> io::Result<bool> {
        let probe = dir.join(format!(".o_direct_probe.{shard}"));
        std::fs::write(&probe, vec![0u8; 64 * 1024])?;
        let result = OpenOptions::new().read(true).dma_open(&probe).await;
        let usable = match result {
            Ok(file) => {
                let readable = file.read_at(0, 512).await.is_ok();
                let _ = file.close().await;
                readable
            }
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "O_DIRECT is not available; segment data uses buffered I/O");
                false
            }
        };
        std::fs::remove_file(&probe)?;
        Ok(usable)
    }
}

pub enum DmaOrBufferedFile {
    Direct(Rc<DmaFile>),
    Buffered(StdFile),
}

impl FileSystem for DmaFileSystem {
    type File = DmaOrBufferedFile;

    async fn open(&self, path: &Path, kind: FileKind, create: bool) -> io::Result<Self::File> {
        if self.direct && kind == FileKind::SegmentData {
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .dma_open(path)
                .await
            {
                Ok(file) => return Ok(DmaOrBufferedFile::Direct(Rc::new(file))),
                Err(error) => {
                    let error = io::Error::from(error);
                    if error.raw_os_error() != Some(libc::EINVAL) {
                        return Err(error);
                    }
                    tracing::warn!(path = %path.display(), "O_DIRECT refused by the file system; using buffered I/O");
                }
            }
        }
        StdFileSystem
            .open(path, kind, create)
            .await
            .map(DmaOrBufferedFile::Buffered)
    }
    // Directory and whole-file operations: the trait's std defaults (see the module doc).
}

/// O_DIRECT writes cover whole 4 KiB pages, not just the device's sectors (often 512 bytes): ext4
/// completes a direct write without blocking only when its position and length are multiples of the
/// file system's block size (4 KiB). A write aligned to sectors only is "unaligned" to ext4: it takes
/// the inode lock exclusively and io_uring hands it to an io-wq worker thread (measured; see
/// BENCHMARKS.md, "per-request cost").
const DIRECT_WRITE_ALIGNMENT: u64 = 4096;

impl StorageFile for DmaOrBufferedFile {
    fn write_alignment(&self) -> usize {
        match self {
            DmaOrBufferedFile::Direct(file) => {
                file.alignment().max(DIRECT_WRITE_ALIGNMENT) as usize
            }
            DmaOrBufferedFile::Buffered(file) => file.write_alignment(),
        }
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        match self {
            DmaOrBufferedFile::Direct(file) => {
                let result = file.read_at(pos, len).await.map_err(io::Error::from)?;
                Ok(Bytes::copy_from_slice(&result))
            }
            DmaOrBufferedFile::Buffered(file) => file.read_at(pos, len).await,
        }
    }

    async fn write_parts_at(&self, pos: u64, parts: &[&[u8]], len: usize) -> io::Result<()> {
        match self {
            DmaOrBufferedFile::Direct(file) => {
                let alignment = self.write_alignment();
                assert!(
                    (pos as usize).is_multiple_of(alignment) && len.is_multiple_of(alignment),
                    "unaligned O_DIRECT write at {pos} of {len}"
                );
                // The one copy: the parts into the aligned DMA buffer, zero padding after them.
                let mut buffer = file.alloc_dma_buffer(len);
                let target = buffer.as_bytes_mut();
                let mut filled = 0;
                for part in parts {
                    target[filled..filled + part.len()].copy_from_slice(part);
                    filled += part.len();
                }
                target[filled..].fill(0);
                let written = file.write_at(buffer, pos).await.map_err(io::Error::from)?;
                if written != len {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("short O_DIRECT write: {written} of {len}"),
                    ));
                }
                Ok(())
            }
            DmaOrBufferedFile::Buffered(file) => file.write_parts_at(pos, parts, len).await,
        }
    }

    async fn sync_data(&self) -> io::Result<()> {
        match self {
            DmaOrBufferedFile::Direct(file) => file.fdatasync().await.map_err(io::Error::from),
            DmaOrBufferedFile::Buffered(file) => file.sync_data().await,
        }
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        match self {
            DmaOrBufferedFile::Direct(file) => file.truncate(len).await.map_err(io::Error::from),
            DmaOrBufferedFile::Buffered(file) => file.truncate(len).await,
        }
    }

    async fn size(&self) -> io::Result<u64> {
        match self {
            DmaOrBufferedFile::Direct(file) => file.file_size().await.map_err(io::Error::from),
            DmaOrBufferedFile::Buffered(file) => file.size().await,
        }
    }

    /// O_DIRECT files read in a task of their own on the shard's executor (the read is submitted to
    /// io_uring when that task first runs, right after the caller yields). Buffered files: `None`, the
    /// page cache reads ahead for them.
    fn start_read(&self, pos: u64, len: usize) -> Option<BackgroundRead> {
        let DmaOrBufferedFile::Direct(file) = self else {
            return None;
        };
        let file = file.clone();
        let (read, completion) = BackgroundRead::pending();
        glommio::spawn_local(async move {
            let result = file
                .read_at(pos, len)
                .await
                .map(|bytes| Bytes::copy_from_slice(&bytes))
                .map_err(io::Error::from);
            completion.complete(result);
        })
        .detach();
        Some(read)
    }

    /// A no-op: reserving a whole segment per partition up front costs every partition its full segment
    /// size on disk (Kafka leaves `file.preallocate` off by default too). The appender reserves the
    /// active segment a window at a time instead ([`StorageFile::allocate`], below).
    async fn preallocate(&self, _len: u64) -> io::Result<()> {
        Ok(())
    }

    /// `fallocate(offset, len)` without KEEP_SIZE (see `StorageFile::allocate`), on glommio's
    /// blocking-thread pool: the shard's thread never waits in the file system (ext4 may wait for
    /// its journal). Allocating a few MiB of new blocks takes about 10 µs; glommio's `pre_allocate`
    /// would always cover the file from offset 0, which walks every extent already written (10–30 ms
    /// on a segment of a few hundred MiB, measured). Buffered files: nothing.
    async fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        let DmaOrBufferedFile::Direct(file) = self else {
            return Ok(());
        };
        let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len))
        else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        // The descriptor stays open until the call returns: `file` is borrowed across the await.
        let descriptor = file.as_raw_fd();
        glommio::executor()
            .spawn_blocking(move || {
                // SAFETY: fallocate reads no memory of ours; the descriptor is open (see above).
                let result = unsafe { libc::fallocate(descriptor, 0, offset, len) };
                if result == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_round_trip_through_o_direct() {
        let dir = tempfile_dir();
        let path = dir.join("00000000000000000000.log");
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                assert!(DmaFileSystem::prepare(path.parent().unwrap(), 0)
                    .await
                    .unwrap());
                let fs = DmaFileSystem { direct: true };
                let file = fs.open(&path, FileKind::SegmentData, true).await.unwrap();
                let alignment = file.write_alignment();
                let data = vec![7u8; alignment * 2];
                file.write_parts_at(0, &[&data], data.len()).await.unwrap();
                file.truncate(alignment as u64 + 10).await.unwrap();
                let back = file.read_at(0, alignment * 4).await.unwrap();
                assert_eq!(back.len(), alignment + 10);
                assert!(back.iter().all(|&b| b == 7));
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn allocate_grows_the_file_with_zeros_and_keeps_what_was_written() {
        with_direct_file("allocate", |file, _| async move {
            assert_eq!(file.write_alignment(), 4096, "whole pages");
            let data = vec![9u8; 4096];
            file.write_parts_at(0, &[&data], data.len()).await.unwrap();
            file.allocate(4096, 1 << 20).await.unwrap();
            assert_eq!(file.size().await.unwrap(), 4096 + (1 << 20));
            // A write into the allocated blocks, then the file: data, zeros, data, zeros.
            file.write_parts_at(8192, &[&data], data.len())
                .await
                .unwrap();
            let back = file.read_at(0, 16384).await.unwrap();
            assert!(back[..4096].iter().all(|&b| b == 9));
            assert!(back[4096..8192].iter().all(|&b| b == 0));
            assert!(back[8192..12288].iter().all(|&b| b == 9));
            assert!(back[12288..].iter().all(|&b| b == 0));
        });
    }

    #[test]
    fn background_reads_run_concurrently_and_return_the_file_bytes() {
        with_direct_file("background", |file, path| async move {
            let data: Vec<u8> = (0..64 * 1024).map(|n| (n % 251) as u8).collect();
            file.write_parts_at(0, &[&data], data.len()).await.unwrap();
            // Four reads in flight at once, two of them unaligned, one up to the end of the file.
            // (Callers stay within the file: an unaligned O_DIRECT read past the end comes back
            // zero-filled to its full length from glommio, not short.)
            let wanted = [
                (0u64, 16384usize),
                (16384, 16384),
                (40000, 1000),
                (60000, 5536),
            ];
            let reads: Vec<_> = wanted
                .iter()
                .map(|&(pos, len)| {
                    file.start_read(pos, len)
                        .expect("O_DIRECT reads in the background")
                })
                .collect();
            assert!(
                reads.iter().all(|read| read.try_result().is_none()),
                "nothing is read before the caller yields"
            );
            for (read, &(pos, len)) in reads.iter().zip(&wanted) {
                let bytes = read.result().await.unwrap();
                assert_eq!(&bytes[..], &data[pos as usize..pos as usize + len]);
                // Taken again: the same bytes, shared.
                assert_eq!(read.try_result().unwrap().unwrap(), bytes);
            }
            let buffered = DmaFileSystem { direct: false }
                .open(&path, FileKind::SegmentData, false)
                .await
                .unwrap();
            assert!(
                buffered.start_read(0, 4096).is_none(),
                "buffered files leave read-ahead to the page cache"
            );
        });
    }

    /// Runs `body` on a glommio executor with a new O_DIRECT segment file (and its path) in a
    /// directory of its own.
    fn with_direct_file<Body, Test>(name: &str, body: Body)
    where
        Body: FnOnce(DmaOrBufferedFile, std::path::PathBuf) -> Test + Send + 'static,
        Test: std::future::Future<Output = ()>,
    {
        let dir = tempfile_dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("00000000000000000000.log");
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                assert!(DmaFileSystem::prepare(&dir, 0).await.unwrap());
                let fs = DmaFileSystem { direct: true };
                let file = fs.open(&path, FileKind::SegmentData, true).await.unwrap();
                body(file, path).await;
            })
            .unwrap()
            .join()
            .unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("shard-dma-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
