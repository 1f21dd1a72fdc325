//! The quorum log as raft-rs reads it: the latest snapshot, the entries after it, the hard state and the
//! voters, in memory (`log_store` makes them durable first). Like raft-rs's `MemStorage`, but it keeps
//! the snapshot's data, so the leader can send it to a follower that needs entries already dropped, and
//! it can compact at an index of its own choosing (`compact`). The Ready loop and the log store hold
//! the same one; it is opened by `main` before the shards start, hence a mutex (uncontended: only the
//! controller shard uses it, and never across an await).
//!
//! Invariants: the entries are contiguous and start right after the snapshot's index
//! (`first_index() == snapshot index + 1`); the commit index never passes the last index.

use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Clone, Default)]
pub struct MemoryLog(Arc<Mutex<LogCore>>);

#[derive(Default)]
pub struct LogCore {
    pub hard_state: HardState,
    pub conf_state: ConfState,
    /// The latest snapshot (index 0 and no data: none yet), data included.
    snapshot: Snapshot,
    entries: Vec<Entry>,
}

impl MemoryLog {
    pub fn new(voters: &[u64]) -> MemoryLog {
        let log = MemoryLog::default();
        log.core_mut().conf_state = ConfState::from((voters.to_vec(), vec![]));
        log
    }

    /// The log, for reading. Not to be held while calling back into raft-rs (it locks it too).
    pub fn core(&self) -> MutexGuard<'_, LogCore> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn core_mut(&self) -> MutexGuard<'_, LogCore> {
        self.core()
    }
}

impl LogCore {
    pub fn first_index(&self) -> u64 {
        self.snapshot.get_metadata().index + 1
    }

    pub fn last_index(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.snapshot.get_metadata().index, |entry| entry.index)
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The term of the entry at `index` (the snapshot's own index included), if it is held.
    pub fn term(&self, index: u64) -> Option<u64> {
        let metadata = self.snapshot.get_metadata();
        if index == metadata.index {
            return Some(metadata.term);
        }
        let position = index.checked_sub(self.first_index())?;
        self.entries.get(position as usize).map(|entry| entry.term)
    }

    /// Appends `entries` (contiguous), replacing any held at or after the first one's index (Raft's
    /// conflict truncation). Panics if they would leave a gap or reach before the snapshot: raft-rs
    /// never asks for either.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        assert!(
            first.index >= self.first_index() && first.index <= self.last_index() + 1,
            "append at {} to a log holding {}..={}",
            first.index,
            self.first_index(),
            self.last_index()
        );
        self.entries
            .truncate((first.index - self.first_index()) as usize);
        self.entries.extend_from_slice(entries);
    }

    /// Takes `snapshot` (its index applied here: the image at that index is its data) and drops the
    /// entries up to its index; the entries after it stay.
    pub fn compact(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        assert!(
            index >= self.snapshot.get_metadata().index && index <= self.last_index(),
            "compaction at {index} of a log holding {}..={}",
            self.first_index(),
            self.last_index()
        );
        assert_eq!(
            Some(snapshot.get_metadata().term),
            self.term(index),
            "snapshot term"
        );
        let dropped = (index + 1 - self.first_index()) as usize;
        self.entries.drain(..dropped);
        self.snapshot = snapshot;
    }

    /// Replaces the whole log with `snapshot` (a follower installing the leader's): every entry is
    /// dropped, the commit index moves up to the snapshot's and the term at least to its term (with
    /// no vote in that term: the vote held was cast in an older one).
    pub fn install(&mut self, snapshot: Snapshot) {
        let metadata = snapshot.get_metadata();
        self.hard_state.commit = self.hard_state.commit.max(metadata.index);
        if metadata.term > self.hard_state.term {
            self.hard_state.term = metadata.term;
            self.hard_state.vote = raft::INVALID_ID;
        }
        self.conf_state = metadata.get_conf_state().clone();
        self.entries.clear();
        self.snapshot = snapshot;
    }
}

impl Storage for MemoryLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let core = self.core();
        Ok(RaftState::new(
            core.hard_state.clone(),
            core.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let core = self.core();
        if low < core.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > core.last_index() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let offset = core.first_index();
        let mut entries = core.entries[(low - offset) as usize..(high - offset) as usize].to_vec();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let core = self.core();
        if index < core.snapshot.get_metadata().index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        core.term(index)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.core().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.core().last_index())
    }

    /// The latest snapshot, for a follower that needs entries before the first one held. Before any
    /// compaction there is none (and no follower can need one): temporarily unavailable.
    ///
    /// It carries the configuration as it is now, not as it was at the snapshot's index: the only
    /// changes taken are learners added (`node_learners`), and raft-rs refuses a snapshot whose
    /// configuration does not name the node it is sent to — a learner added after the snapshot. The
    /// entries after the snapshot add the same learners again, which changes nothing.
    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let core = self.core();
        if core.snapshot.get_metadata().index == 0 {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snapshot = core.snapshot.clone();
        snapshot
            .mut_metadata()
            .set_conf_state(core.conf_state.clone());
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    fn snapshot(index: u64, term: u64, data: &[u8]) -> Snapshot {
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = index;
        snapshot.mut_metadata().term = term;
        snapshot.set_data(data.to_vec().into());
        snapshot
    }

    fn context() -> GetEntriesContext {
        GetEntriesContext::empty(false)
    }

    #[test]
    fn compaction_keeps_the_entries_after_the_snapshot_and_its_term() {
        let log = MemoryLog::new(&[1, 2, 3]);
        log.core_mut().append(
            &(1..=10)
                .map(|index| entry(index, 1 + index / 5))
                .collect::<Vec<_>>(),
        );
        assert!(matches!(
            log.snapshot(0, 2),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        ));
        log.core_mut().compact(snapshot(6, 2, b"image"));
        assert_eq!(
            (log.first_index().unwrap(), log.last_index().unwrap()),
            (7, 10)
        );
        assert_eq!(
            log.term(6).unwrap(),
            2,
            "the snapshot's own index keeps its term"
        );
        assert!(matches!(
            log.term(5),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert!(matches!(
            log.entries(6, 8, None, context()),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        let entries = log.entries(7, 11, None, context()).unwrap();
        assert_eq!(
            entries.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![7, 8, 9, 10]
        );
        assert_eq!(log.snapshot(0, 2).unwrap().get_data(), b"image");
        // A conflicting suffix replaces what follows it.
        log.core_mut().append(&[entry(9, 5)]);
        assert_eq!((log.last_index().unwrap(), log.term(9).unwrap()), (9, 5));
        // Compacting everything leaves an empty log that continues after the snapshot.
        log.core_mut().compact(snapshot(9, 5, b"later"));
        assert_eq!(
            (log.first_index().unwrap(), log.last_index().unwrap()),
            (10, 9)
        );
        log.core_mut().append(&[entry(10, 5)]);
        assert_eq!(log.last_index().unwrap(), 10);
    }

    #[test]
    fn installing_a_snapshot_replaces_the_log() {
        let log = MemoryLog::new(&[1, 2, 3]);
        log.core_mut().append(&[entry(1, 1), entry(2, 1)]);
        log.core_mut().hard_state.commit = 2;
        log.core_mut().hard_state.vote = 2;
        let mut leader_snapshot = snapshot(50, 4, b"image");
        leader_snapshot
            .mut_metadata()
            .set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        log.core_mut().install(leader_snapshot);
        let state = log.initial_state().unwrap();
        assert_eq!((state.hard_state.commit, state.hard_state.term), (50, 4));
        assert_eq!(
            state.hard_state.vote, 0,
            "a vote of an older term is not one of term 4"
        );
        assert_eq!(
            (log.first_index().unwrap(), log.last_index().unwrap()),
            (51, 50)
        );
        assert_eq!(log.term(50).unwrap(), 4);
    }
}
