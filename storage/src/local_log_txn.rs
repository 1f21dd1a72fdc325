//! The segment map's aborted-transaction indexes (see `txn_index` for the format): appending the
//! active segment's entries, fsyncing them with the segment, replacing entries after a replay, and
//! the lookups the fetch path and the cleaner make.
//!
//! # Invariants
//! * Every segment's entries are in memory (`Segment::aborted`, in marker-offset order, each in
//!   the segment holding its marker); the `.txnindex` file holds the same entries (none: no file,
//!   or an empty one).
//! * The active segment's file, once opened for an append, stays open until the segment rolls or
//!   is rewritten, and is fsynced whenever the segment's `.log` is (flush, roll, close).

use super::LocalLog;
use crate::appender::Appender;
use crate::io::{FileKind, FileSystem, StorageFile};
use crate::segment;
use crate::txn_index::{self, AbortedTxnEntry, TXN_ENTRY_SIZE, TXN_INDEX_EXTENSION};
use bytes::Bytes;
use std::io;
use std::rc::Rc;

impl<F: FileSystem> LocalLog<F> {
    /// Adds `entry` (an ABORT marker just appended to the active segment) to the active segment's
    /// index, in memory and in its file (created on the first entry).
    pub(crate) async fn append_aborted(&self, entry: AbortedTxnEntry) -> io::Result<()> {
        let (base, count, file) = {
            let mut segments = self.segments.borrow_mut();
            let active = segments.active();
            assert!(
                entry.last_offset >= active.base && entry.last_offset <= active.last_offset,
                "aborted transaction marker {} outside the active segment",
                entry.last_offset
            );
            assert!(
                active
                    .aborted
                    .last()
                    .is_none_or(|last| last.last_offset < entry.last_offset),
                "aborted transaction entries out of order"
            );
            active.aborted.push(entry);
            let base = active.base;
            let count = active.aborted.len();
            (base, count, segments.txn_file.clone())
        };
        let position = ((count - 1) * TXN_ENTRY_SIZE) as u64;
        let file = match file {
            Some(file) => file,
            None => {
                let path = self.path(base, TXN_INDEX_EXTENSION);
                let file = Rc::new(self.fs.open(&path, FileKind::Small, true).await?);
                // Whatever lies past the entries in memory is stale.
                if file.size().await? > position {
                    file.truncate(position).await?;
                }
                self.segments.borrow_mut().txn_file = Some(file.clone());
                file
            }
        };
        let appender = Appender::open(file, position).await?;
        appender.append(Bytes::copy_from_slice(&entry.encode()));
        appender.flush().await
    }

    /// fsyncs the active segment's index file, if it has one open.
    pub(crate) async fn sync_txn_index(&self) -> io::Result<()> {
        let file = self.segments.borrow().txn_file.clone();
        match file {
            Some(file) => file.sync_data().await,
            None => Ok(()),
        }
    }

    /// The entries a read_committed fetch of `[start, upper)` must know (Kafka's
    /// `collectAbortedTransactions`): from the segment holding `start` on, those with
    /// `last_offset >= start && first_offset < upper`, until an entry's last stable offset reaches
    /// `upper`; oldest first.
    pub(crate) fn aborted_between(&self, start: i64, upper: i64) -> Vec<AbortedTxnEntry> {
        let segments = self.segments.borrow();
        let from_base = segments
            .by_base
            .range(..=start)
            .next_back()
            .or_else(|| segments.by_base.iter().next())
            .map(|(base, _)| *base);
        let mut found = Vec::new();
        let Some(from_base) = from_base else {
            return found;
        };
        for segment in segments
            .by_base
            .range(from_base..)
            .map(|(_, segment)| segment)
        {
            if txn_index::collect(&segment.aborted, start, upper, &mut found) {
                break;
            }
        }
        found
    }

    /// Every entry of every segment, oldest first (the cleaner's view of aborted data).
    pub(crate) fn all_aborted(&self) -> Vec<AbortedTxnEntry> {
        let segments = self.segments.borrow();
        segments
            .by_base
            .values()
            .flat_map(|segment| segment.aborted.iter().copied())
            .collect()
    }

    /// After a replay of the batches from `from`: every entry at or beyond `from` is replaced by
    /// `replayed` (each put in the segment holding its marker); the files of the segments whose
    /// entries changed are rewritten (removed when they have none left).
    pub(crate) async fn replace_aborted_from(
        &self,
        from: i64,
        replayed: Vec<AbortedTxnEntry>,
    ) -> io::Result<()> {
        let changed: Vec<(i64, Vec<AbortedTxnEntry>)> = {
            let mut segments = self.segments.borrow_mut();
            let mut lists: std::collections::BTreeMap<i64, Vec<AbortedTxnEntry>> = segments
                .by_base
                .iter()
                .map(|(base, segment)| {
                    let kept = segment
                        .aborted
                        .iter()
                        .filter(|entry| entry.last_offset < from)
                        .copied()
                        .collect();
                    (*base, kept)
                })
                .collect();
            for entry in replayed {
                if let Some((_, list)) = lists.range_mut(..=entry.last_offset).next_back() {
                    list.push(entry);
                }
            }
            let mut changed = Vec::new();
            for (base, mut list) in lists {
                list.sort_by_key(|entry| entry.last_offset);
                let segment = segments.by_base.get_mut(&base).expect("listed segment");
                if segment.aborted != list {
                    segment.aborted = list.clone();
                    changed.push((base, list));
                }
            }
            let active_base = *segments.by_base.keys().next_back().expect("a segment");
            if changed.iter().any(|(base, _)| *base == active_base) {
                segments.txn_file = None;
            }
            changed
        };
        for (base, entries) in changed {
            self.rewrite_txn_index(base, &entries).await?;
        }
        Ok(())
    }

    /// Replaces the file of the segment at `base` by `entries` (fsynced; removed when empty).
    pub(crate) async fn rewrite_txn_index(
        &self,
        base: i64,
        entries: &[AbortedTxnEntry],
    ) -> io::Result<()> {
        let path = self.path(base, TXN_INDEX_EXTENSION);
        if entries.is_empty() {
            return super::remove_if_present(&self.fs, &path).await;
        }
        let file = Rc::new(self.fs.open(&path, FileKind::Small, true).await?);
        let appender = segment::write_whole(file.clone(), &txn_index::encode_all(entries)).await?;
        drop(appender);
        file.sync_data().await
    }
}
