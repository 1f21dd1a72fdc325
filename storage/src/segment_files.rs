//! A bounded pool of open inactive-segment `.log` files, shared by the logs of one shard.
//!
//! A log keeps only its active segment's files (`.log`, `.index`, `.timeindex`) open. An inactive
//! segment's `.log` file is opened on first read through this pool and stays open while it is among
//! the `capacity` most recently used; opening another one past that closes the least recently used
//! (Kafka keeps every segment open and needs a huge descriptor limit; this bounds what a data
//! directory with any number of segments costs). Inactive segments' indexes are read whole into
//! memory and their files closed at once: they never hold a descriptor.
//!
//! # Invariants
//! * At most `capacity` files are held by the pool. A reader holds its own `Rc` to the file it
//!   scans: eviction only drops the pool's reference, and the descriptor closes when the last
//!   reader is done. So a shard's logs hold at most their active segments' files, `capacity`
//!   pooled files, the files of reads in progress, and for each first lookup in an inactive
//!   segment's index one index file while it is read.
//! * Entries are keyed by path; a log forgets its entries when it is closed or dropped (so files of a
//!   deleted partition are not kept open).
//! * Single-threaded (a shard's executor): no locking, no `Send`.

use crate::io::{FileKind, FileSystem};
use crate::read_ahead::{ReadAheadBudget, ReadAheadConfig};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Inactive-segment files a shard keeps open by default.
pub const DEFAULT_OPEN_SEGMENT_FILES: usize = 256;

pub struct SegmentFilePool<F: FileSystem> {
    fs: F,
    capacity: usize,
    /// The shard's read-ahead memory, shared by its logs' readers as the files are (`read_ahead`).
    read_ahead: Rc<ReadAheadBudget>,
    state: RefCell<PoolState<F::File>>,
}

struct PoolState<Fl> {
    /// Open files by path, with the tick of their last use.
    open: HashMap<PathBuf, (u64, Rc<Fl>)>,
    /// Last-use tick to path: the first entry is the least recently used.
    by_use: BTreeMap<u64, PathBuf>,
    tick: u64,
    /// Files opened since the pool was made (diagnostics and tests).
    opens: u64,
}

impl<Fl> PoolState<Fl> {
    fn touch(&mut self, path: &Path) -> Option<Rc<Fl>> {
        self.tick += 1;
        let tick = self.tick;
        let (used, file) = self.open.get_mut(path)?;
        self.by_use.remove(used);
        *used = tick;
        self.by_use.insert(tick, path.to_path_buf());
        Some(file.clone())
    }

    /// Closes (drops the pool's reference to) least recently used files until at most `keep` remain.
    fn evict_to(&mut self, keep: usize) {
        while self.open.len() > keep {
            let Some((_, path)) = self.by_use.pop_first() else {
                break;
            };
            self.open.remove(&path);
        }
    }
}

impl<F: FileSystem> SegmentFilePool<F> {
    /// A pool that holds at most `capacity` files open (at least 1).
    pub fn new(fs: F, capacity: usize) -> Self {
        SegmentFilePool {
            fs,
            capacity: capacity.max(1),
            read_ahead: Rc::new(ReadAheadBudget::new(ReadAheadConfig::default())),
            state: RefCell::new(PoolState {
                open: HashMap::new(),
                by_use: BTreeMap::new(),
                tick: 0,
                opens: 0,
            }),
        }
    }

    /// The pool with read-ahead configured as `config` (the default: [`ReadAheadConfig::default`]).
    pub fn with_read_ahead(mut self, config: ReadAheadConfig) -> Self {
        self.read_ahead = Rc::new(ReadAheadBudget::new(config));
        self
    }

    /// The shard's read-ahead budget.
    pub fn read_ahead(&self) -> &Rc<ReadAheadBudget> {
        &self.read_ahead
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Files the pool holds open now.
    pub fn open_count(&self) -> usize {
        self.state.borrow().open.len()
    }

    /// Files opened since the pool was made.
    pub fn opens(&self) -> u64 {
        self.state.borrow().opens
    }

    /// The segment data file at `path` (which must exist), opened when the pool does not hold it.
    pub async fn get(&self, path: &Path) -> io::Result<Rc<F::File>> {
        {
            let mut state = self.state.borrow_mut();
            if let Some(file) = state.touch(path) {
                return Ok(file);
            }
            // Make room first, so that the pool never holds more than `capacity` descriptors.
            state.evict_to(self.capacity - 1);
        }
        let file = Rc::new(self.fs.open(path, FileKind::SegmentData, false).await?);
        let mut state = self.state.borrow_mut();
        state.opens += 1;
        // Another task may have opened the same file while this one awaited: keep one.
        if let Some(existing) = state.touch(path) {
            return Ok(existing);
        }
        state.evict_to(self.capacity - 1);
        let tick = state.tick;
        state.open.insert(path.to_path_buf(), (tick, file.clone()));
        state.by_use.insert(tick, path.to_path_buf());
        Ok(file)
    }

    /// Drops the pool's reference to the file at `path` (a segment deleted, or written again).
    pub fn forget(&self, path: &Path) {
        let mut state = self.state.borrow_mut();
        if let Some((tick, _)) = state.open.remove(path) {
            state.by_use.remove(&tick);
        }
    }

    /// Drops the pool's references to every file directly in `dir` (a log being closed).
    pub fn forget_dir(&self, dir: &Path) {
        let mut state = self.state.borrow_mut();
        let gone: Vec<(u64, PathBuf)> = state
            .open
            .iter()
            .filter(|(path, _)| path.parent() == Some(dir))
            .map(|(path, (tick, _))| (*tick, path.clone()))
            .collect();
        for (tick, path) in gone {
            state.by_use.remove(&tick);
            state.open.remove(&path);
        }
    }
}
