//! The segment map's share of log cleaning (see `cleaner`): a summary of the segments for picking
//! the cleanable range, and the in-memory half of swapping a cleaned segment in.
//!
//! # Invariants
//! * Only inactive segments are ever swapped, one for one: the new segment keeps the old one's
//!   base (and so its place and implied last offset) and may hold fewer batches, with gaps.
//! * While its files are being renamed into place the new segment holds its `.log` file open
//!   (`Segment::file`), and its indexes are in memory, so a read never opens a path mid-rename;
//!   [`LocalLog::release_cleaned_file`] hands it back to the shard's pool afterwards.
//! * A swap is refused when the old segment changed or went away while it was being cleaned
//!   (retention, truncation): the cleaned files are then discarded.

use super::LocalLog;
use crate::io::FileSystem;
use crate::segment::{Segment, LOG_EXTENSION};
use std::rc::Rc;

/// What the cleaner needs to know of one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentSummary {
    pub(crate) base: i64,
    /// One past its last offset: the next segment's base, or the log end for the active one.
    pub(crate) end: i64,
    pub(crate) size: u64,
    /// The largest timestamp in it (-1: unknown or empty).
    pub(crate) max_timestamp: i64,
    pub(crate) active: bool,
    /// An inactive segment holding its file open: a swap of it is still renaming files (or its
    /// renames failed: the next open completes them), so it is not cleaned again meanwhile.
    pub(crate) swapping: bool,
}

impl<F: FileSystem> LocalLog<F> {
    pub(crate) fn file_system(&self) -> &F {
        &self.fs
    }

    /// The segments, oldest first.
    pub(crate) fn segment_summaries(&self) -> Vec<SegmentSummary> {
        let segments = self.segments.borrow();
        let mut summaries: Vec<SegmentSummary> = Vec::with_capacity(segments.by_base.len());
        let count = segments.by_base.len();
        for (position, (&base, segment)) in segments.by_base.iter().enumerate() {
            let active = position + 1 == count;
            summaries.push(SegmentSummary {
                base,
                end: if active {
                    (segment.last_offset + 1).max(base)
                } else {
                    segment.last_offset + 1
                },
                size: segment.size,
                max_timestamp: segment.max_timestamp,
                active,
                swapping: !active && segment.file.is_some(),
            });
        }
        summaries
    }

    /// Step 3 of the swap: replaces the inactive segment at `cleaned.base`, still `old_size`
    /// bytes, by `cleaned` (which holds its file open). Returns false, changing nothing, when that
    /// segment is gone, changed size or became the active one.
    pub(crate) fn install_cleaned(&self, old_size: u64, mut cleaned: Segment<F::File>) -> bool {
        let base = cleaned.base;
        let mut segments = self.segments.borrow_mut();
        let is_last = segments.by_base.keys().next_back() == Some(&base);
        let Some(old) = segments.by_base.get(&base) else {
            return false;
        };
        if is_last || old.size != old_size || old.file.is_some() {
            return false;
        }
        cleaned.last_offset = old.last_offset;
        // The cleaned segment keeps its markers, so its `.txnindex` (untouched) stays right.
        cleaned.aborted = old.aborted.clone();
        segments.by_base.insert(base, cleaned);
        drop(segments);
        self.forget_file(&self.path(base, LOG_EXTENSION));
        true
    }

    /// After step 5 of the swap: the segment at `base`, if it still holds `file`, reads its
    /// `.log` through the pool again (which may have opened the old file by path meanwhile: it is
    /// forgotten).
    pub(crate) fn release_cleaned_file(&self, base: i64, file: &Rc<F::File>) {
        let mut segments = self.segments.borrow_mut();
        let is_last = segments.by_base.keys().next_back() == Some(&base);
        if let Some(segment) = segments.by_base.get_mut(&base) {
            let holds = segment
                .file
                .as_ref()
                .is_some_and(|held| Rc::ptr_eq(held, file));
            if holds && !is_last {
                segment.file = None;
            }
        }
        drop(segments);
        self.forget_file(&self.path(base, LOG_EXTENSION));
    }
}
