//! The file system a shard holds: glommio's ([`DmaFileSystem`]: io_uring, O_DIRECT segment data) in
//! production, `std` files ([`StdFileSystem`]) where no glommio executor runs — unit tests on a
//! [`crate::simulation::Simulation`].
//!
//! Both enums delegate every method to the variant they hold, one `match` per method through
//! [`each_file_system!`] / [`each_file!`]; a method added to `storage::io::FileSystem` or `StorageFile` is
//! one more line here. Methods with a default body in the trait are delegated explicitly too, so a
//! variant's own implementation is never bypassed.

use crate::dma::{DmaFileSystem, DmaOrBufferedFile};
use bytes::Bytes;
use std::ffi::OsString;
use std::io;
use std::path::Path;
use storage::io::{BackgroundRead, FileKind, FileSystem, StdFile, StdFileSystem, StorageFile};

#[derive(Clone, Copy, Debug)]
pub enum ShardFileSystem {
    /// glommio files; needs a glommio executor on the thread.
    Dma(DmaFileSystem),
    /// `std::fs` files; works on any thread.
    Std(StdFileSystem),
}

/// A file of a [`ShardFileSystem`], from the variant that opened it.
pub enum ShardFile {
    Dma(DmaOrBufferedFile),
    Std(StdFile),
}

/// `$body` with `$inner` bound to the file system `$value` holds, whichever variant it is.
macro_rules! each_file_system {
    ($value:expr, $inner:ident => $body:expr) => {
        match $value {
            ShardFileSystem::Dma($inner) => $body,
            ShardFileSystem::Std($inner) => $body,
        }
    };
}

/// `$body` with `$inner` bound to the file `$value` holds, whichever variant it is.
macro_rules! each_file {
    ($value:expr, $inner:ident => $body:expr) => {
        match $value {
            ShardFile::Dma($inner) => $body,
            ShardFile::Std($inner) => $body,
        }
    };
}

impl From<DmaFileSystem> for ShardFileSystem {
    fn from(file_system: DmaFileSystem) -> Self {
        ShardFileSystem::Dma(file_system)
    }
}

impl From<StdFileSystem> for ShardFileSystem {
    fn from(file_system: StdFileSystem) -> Self {
        ShardFileSystem::Std(file_system)
    }
}

impl From<DmaOrBufferedFile> for ShardFile {
    fn from(file: DmaOrBufferedFile) -> Self {
        ShardFile::Dma(file)
    }
}

impl From<StdFile> for ShardFile {
    fn from(file: StdFile) -> Self {
        ShardFile::Std(file)
    }
}

impl FileSystem for ShardFileSystem {
    type File = ShardFile;

    async fn open(&self, path: &Path, kind: FileKind, create: bool) -> io::Result<ShardFile> {
        each_file_system!(self, file_system => file_system.open(path, kind, create).await.map(ShardFile::from))
    }

    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        each_file_system!(self, file_system => file_system.create_dir_all(path).await)
    }

    async fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        each_file_system!(self, file_system => file_system.list_dir(path).await)
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        each_file_system!(self, file_system => file_system.remove_file(path).await)
    }

    async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        each_file_system!(self, file_system => file_system.remove_dir_all(path).await)
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        each_file_system!(self, file_system => file_system.rename(from, to).await)
    }

    async fn file_size(&self, path: &Path) -> io::Result<u64> {
        each_file_system!(self, file_system => file_system.file_size(path).await)
    }

    async fn read_file(&self, path: &Path) -> io::Result<Bytes> {
        each_file_system!(self, file_system => file_system.read_file(path).await)
    }
}

impl StorageFile for ShardFile {
    fn write_alignment(&self) -> usize {
        each_file!(self, file => file.write_alignment())
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        each_file!(self, file => file.read_at(pos, len).await)
    }

    async fn write_parts_at(&self, pos: u64, parts: &[&[u8]], len: usize) -> io::Result<()> {
        each_file!(self, file => file.write_parts_at(pos, parts, len).await)
    }

    async fn sync_data(&self) -> io::Result<()> {
        each_file!(self, file => file.sync_data().await)
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        each_file!(self, file => file.truncate(len).await)
    }

    async fn size(&self) -> io::Result<u64> {
        each_file!(self, file => file.size().await)
    }

    async fn preallocate(&self, len: u64) -> io::Result<()> {
        each_file!(self, file => file.preallocate(len).await)
    }

    async fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        each_file!(self, file => file.allocate(offset, len).await)
    }

    fn start_read(&self, pos: u64, len: usize) -> Option<BackgroundRead> {
        each_file!(self, file => file.start_read(pos, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulation::Simulation;

    #[test]
    fn std_variant_round_trips_inside_a_simulation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.log");
        let file_system = ShardFileSystem::from(StdFileSystem);
        let mut simulation = Simulation::new();
        simulation.block_on(async {
            let file = file_system
                .open(&path, FileKind::SegmentData, true)
                .await
                .unwrap();
            assert_eq!(file.write_alignment(), 1);
            file.write_parts_at(0, &[b"hello ", b"world"], 11)
                .await
                .unwrap();
            file.preallocate(4096).await.unwrap();
            file.sync_data().await.unwrap();
            assert_eq!(file.size().await.unwrap(), 11);
            file.truncate(5).await.unwrap();
            assert_eq!(&file.read_at(0, 64).await.unwrap()[..], b"hello");
        });
        assert!(std::fs::metadata(&path).is_ok());
    }

    #[test]
    fn std_variant_open_without_create_fails_on_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let file_system = ShardFileSystem::Std(StdFileSystem);
        let mut simulation = Simulation::new();
        let result = simulation.block_on(file_system.open(
            &dir.path().join("missing"),
            FileKind::Small,
            false,
        ));
        assert_eq!(result.err().unwrap().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn dma_variant_delegates_on_a_glommio_executor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.index");
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let file_system = ShardFileSystem::from(DmaFileSystem { direct: false });
                let file = file_system
                    .open(&path, FileKind::Small, true)
                    .await
                    .unwrap();
                assert!(matches!(
                    file,
                    ShardFile::Dma(DmaOrBufferedFile::Buffered(_))
                ));
                file.write_parts_at(0, &[b"abc"], 3).await.unwrap();
                assert_eq!(&file.read_at(0, 8).await.unwrap()[..], b"abc");
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
