//! A cleaner pass over one log (see the `cleaner` module doc for the steps and rules): the
//! `Log` facade's `cleanable` and `clean`.
//!
//! # Invariants
//! * Only closed segments below the first uncleanable offset are read for the offset map, and
//!   only closed segments are rewritten; appends, rolls and reads go on meanwhile (the pass yields
//!   between chunks). A segment that changed meanwhile is not swapped.
//! * The checkpoint is written only after every swap of the pass, and never above what was
//!   indexed, so a crash or an error leaves a first dirty offset that is safe to clean from.
//! * Transactions: the cleanable range ends at the last stable offset, so every transaction in it
//!   is complete. The data batches of aborted transactions (a transactional batch of producer P
//!   inside one of P's `.txnindex` ranges) are removed whole, and never enter the offset map (they
//!   must not hide an older committed value). Markers are all kept (safe: Kafka drops one only
//!   once its transaction's data is gone and `delete.retention.ms` passed; not done here), so the
//!   `.txnindex` entries stay valid and the cleaned segment keeps its `.txnindex` file.

use super::Log;
use crate::appender::Appender;
use crate::batch::BatchHeader;
use crate::cleaner::swap::{self, path_with_suffix, CLEANED_SUFFIX, SWAP_SUFFIX};
use crate::cleaner::{
    filter_batch, CleanStats, CleanableLog, Cleaner, CleanerPacer, FilteredBatch,
};
use crate::error::StorageError;
use crate::io::{FileKind, FileSystem, StorageFile};
use crate::local_log::SegmentSummary;
use crate::segment::{self, Segment, INDEX_EXTENSION, LOG_EXTENSION, TIME_INDEX_EXTENSION};
use crate::types::Offset;
use bytes::Bytes;
use std::io;
use std::rc::Rc;

/// Bytes read from a segment per step (between yields and throttle waits).
const READ_CHUNK: usize = 1 << 20;

/// The offsets that split the log and the sections' sizes.
struct Sections {
    first_dirty: i64,
    first_uncleanable: i64,
    clean_bytes: u64,
    dirty_bytes: u64,
    /// Max timestamp of the first dirty segment (-1: unknown).
    first_dirty_max_timestamp: i64,
}

fn sections(
    summaries: &[SegmentSummary],
    checkpoint: Option<i64>,
    log_start: i64,
    high_watermark: i64,
    min_compaction_lag_ms: i64,
    now_ms: i64,
) -> Sections {
    let log_end = summaries.last().map_or(log_start, |summary| summary.end);
    let first_dirty = match checkpoint {
        Some(offset) if offset >= log_start && offset <= log_end => offset,
        _ => log_start,
    };
    let too_new = |summary: &SegmentSummary| {
        min_compaction_lag_ms > 0
            && summary.max_timestamp > now_ms.saturating_sub(min_compaction_lag_ms)
    };
    let first_uncleanable = summaries
        .iter()
        .find(|summary| summary.active || summary.end > high_watermark || too_new(summary))
        .map_or(log_end, |summary| summary.base)
        .max(first_dirty);
    let mut sections = Sections {
        first_dirty,
        first_uncleanable,
        clean_bytes: 0,
        dirty_bytes: 0,
        first_dirty_max_timestamp: -1,
    };
    for summary in summaries {
        if summary.end <= first_dirty {
            sections.clean_bytes += summary.size;
        } else if summary.end <= first_uncleanable {
            if sections.dirty_bytes == 0 {
                sections.first_dirty_max_timestamp = summary.max_timestamp;
            }
            sections.dirty_bytes += summary.size;
        }
    }
    sections
}

impl<F: FileSystem> Log<F> {
    /// Where this log stands for the cleaner at `now_ms`: `None` when its policy is not
    /// `compact`, it is closed, or it has no dirty closed segment.
    pub async fn cleanable(&self, now_ms: i64) -> Option<CleanableLog> {
        let (config, last_stable_offset) = {
            let state = self.state.borrow();
            if state.closed || !state.config.cleanup_policy.compact {
                return None;
            }
            // Open transactions stay uncleaned (Kafka bounds the cleaner by the LSO too): every
            // transaction in the cleaned range is committed or aborted for good.
            let log_start = self.local.log_start_offset();
            (state.config.clone(), Self::stable_offset(&state, log_start))
        };
        let checkpoint = swap::read_checkpoint(self.local.file_system(), self.dir()).await;
        let summaries = self.local.segment_summaries();
        let sections = sections(
            &summaries,
            checkpoint,
            self.local.log_start_offset(),
            last_stable_offset,
            config.min_compaction_lag_ms,
            now_ms,
        );
        if sections.dirty_bytes == 0 {
            return None;
        }
        let total = sections.clean_bytes + sections.dirty_bytes;
        let dirty_ratio = sections.dirty_bytes as f64 / total as f64;
        let past_max_compaction_lag = config.max_compaction_lag_ms < i64::MAX
            && sections.first_dirty_max_timestamp
                < now_ms.saturating_sub(config.max_compaction_lag_ms);
        Some(CleanableLog {
            first_dirty_offset: Offset(sections.first_dirty),
            first_uncleanable_offset: Offset(sections.first_uncleanable),
            clean_bytes: sections.clean_bytes,
            dirty_bytes: sections.dirty_bytes,
            dirty_ratio,
            past_max_compaction_lag,
            should_clean: dirty_ratio >= config.min_cleanable_dirty_ratio
                || past_max_compaction_lag,
        })
    }

    /// One cleaner pass at `now_ms` (whatever the dirty ratio: the caller chose this log from
    /// [`Log::cleanable`]). Waits and yields through `pacer`.
    pub async fn clean(
        &self,
        cleaner: &mut Cleaner,
        now_ms: i64,
        pacer: &impl CleanerPacer,
    ) -> Result<CleanStats, StorageError> {
        let mut stats = CleanStats::default();
        let Some(cleanable) = self.cleanable(now_ms).await else {
            return Ok(stats);
        };
        let first_dirty = cleanable.first_dirty_offset.0;
        let first_uncleanable = cleanable.first_uncleanable_offset.0;
        // No more keys than records, and a record takes at least MIN_RECORD_SIZE bytes.
        let most_records = cleanable.dirty_bytes as usize / crate::records::MIN_RECORD_SIZE;
        cleaner.map.prepare(most_records);
        let aborted = AbortedRanges::new(self.local.all_aborted());
        let range = (first_dirty, first_uncleanable);
        let Some(end) = self
            .build_offset_map(cleaner, range, &aborted, pacer, &mut stats)
            .await?
        else {
            return Ok(stats);
        };
        let config = self.config();
        let tombstone_horizon = now_ms.saturating_sub(config.delete_retention_ms.max(0));
        let rewrite = Rewrite {
            end,
            tombstone_horizon,
            index_interval_bytes: config.index_interval_bytes,
            aborted,
        };
        let mut swapped = false;
        for summary in self.local.segment_summaries() {
            if summary.active || summary.base >= end {
                break;
            }
            swapped |= self
                .rewrite_segment(cleaner, summary, &rewrite, pacer, &mut stats)
                .await?;
        }
        if swapped {
            // The cache may hold batches of the segments rewritten.
            self.cache.invalidate(self.id);
        }
        swap::write_checkpoint(self.local.file_system(), self.dir(), end).await?;
        stats.cleaned_up_to = Some(Offset(end));
        tracing::debug!(dir = %self.dir().display(), ?stats, "log cleaned");
        Ok(stats)
    }

    /// Step 1: indexes `[first_dirty, first_uncleanable)` into the map; returns the end of what
    /// was indexed (`None`: not even one batch fitted).
    async fn build_offset_map(
        &self,
        cleaner: &mut Cleaner,
        (first_dirty, first_uncleanable): (i64, i64),
        aborted: &AbortedRanges,
        pacer: &impl CleanerPacer,
        stats: &mut CleanStats,
    ) -> Result<Option<i64>, StorageError> {
        let mut indexed_end = first_dirty;
        let mut current = first_dirty;
        while current < first_uncleanable && !stats.map_full {
            let Some(located) = self.local.locate(current).await? else {
                break;
            };
            let mut position = located.position;
            let mut error = None;
            loop {
                let mut read = 0usize;
                let map = &mut cleaner.map;
                let full = &mut stats.map_full;
                let next = segment::scan(
                    &*located.file,
                    position,
                    located.size,
                    READ_CHUNK,
                    false,
                    |_, header, bytes| {
                        if read >= READ_CHUNK || *full || error.is_some() {
                            return false;
                        }
                        read += bytes.len();
                        if header.last_offset() < current || header.is_control() {
                            return true;
                        }
                        if header.base_offset >= first_uncleanable {
                            return false;
                        }
                        // Aborted records are removed, so they must not hide older values.
                        if aborted.holds(header) {
                            indexed_end = header.last_offset() + 1;
                            return true;
                        }
                        if map.lacks_room_for(header.records_count.max(0) as usize) {
                            *full = true;
                            return false;
                        }
                        let result = crate::records::for_each_record(header, &bytes, |record| {
                            if let Some(key) = record.key {
                                let offset = header.base_offset + record.offset_delta as i64;
                                map.put(key, offset);
                            }
                        });
                        if let Err(failed) = result {
                            error = Some(failed);
                            return false;
                        }
                        indexed_end = header.last_offset() + 1;
                        true
                    },
                )
                .await?;
                if let Some(failed) = error.take() {
                    return Err(failed);
                }
                stats.bytes_read += read as u64;
                pacer.pause(cleaner.throttle.charge(read as u64)).await;
                if next == position || next >= located.size || stats.map_full {
                    break;
                }
                position = next;
            }
            if stats.map_full {
                break;
            }
            match self.local.next_segment_base(located.base) {
                Some(next_base) if next_base < first_uncleanable => {
                    indexed_end = indexed_end.max(next_base);
                    current = next_base;
                }
                _ => {
                    indexed_end = indexed_end.max(first_uncleanable);
                    break;
                }
            }
        }
        if stats.map_full && cleaner.map.is_empty() {
            tracing::warn!(dir = %self.dir().display(), "log cleaner offset map too small for one batch; raise log.cleaner.dedupe.buffer.size");
            return Ok(None);
        }
        if !stats.map_full {
            indexed_end = indexed_end.max(first_uncleanable);
        }
        Ok((indexed_end > first_dirty).then_some(indexed_end))
    }
}

/// The rules of step 2 for one pass.
struct Rewrite {
    /// The end of the indexed range: tombstones below it may go.
    end: i64,
    /// Tombstones in batches whose max timestamp is below this go.
    tombstone_horizon: i64,
    index_interval_bytes: u32,
    /// Batches of aborted transactions go whole.
    aborted: AbortedRanges,
}

/// The aborted transactions of the log (from the segments' `.txnindex` entries), by producer:
/// `(first_offset, last_offset)` ranges, in offset order.
pub(crate) struct AbortedRanges(std::collections::HashMap<i64, Vec<(i64, i64)>>);

impl AbortedRanges {
    fn new(entries: Vec<crate::txn_index::AbortedTxnEntry>) -> AbortedRanges {
        let mut ranges: std::collections::HashMap<i64, Vec<(i64, i64)>> = Default::default();
        for entry in entries {
            ranges
                .entry(entry.producer_id)
                .or_default()
                .push((entry.first_offset, entry.last_offset));
        }
        AbortedRanges(ranges)
    }

    /// Whether `header` is a data batch of a transaction that was aborted (its producer's batch
    /// inside one of that producer's aborted ranges).
    fn holds(&self, header: &BatchHeader) -> bool {
        if header.is_control() || !header.is_transactional() {
            return false;
        }
        let Some(ranges) = self.0.get(&header.producer_id) else {
            return false;
        };
        // The last range starting at or before the batch.
        let index = ranges.partition_point(|(first, _)| *first <= header.base_offset);
        index > 0 && header.base_offset <= ranges[index - 1].1
    }
}

impl<F: FileSystem> Log<F> {
    /// Steps 2 and 3 for one segment; returns whether it was swapped.
    async fn rewrite_segment(
        &self,
        cleaner: &mut Cleaner,
        summary: SegmentSummary,
        rewrite: &Rewrite,
        pacer: &impl CleanerPacer,
        stats: &mut CleanStats,
    ) -> Result<bool, StorageError> {
        let base = summary.base;
        if summary.swapping {
            return Ok(false);
        }
        let Some(located) = self.local.locate(base).await? else {
            return Ok(false);
        };
        if located.base != base || located.size != summary.size {
            return Ok(false);
        }
        let fs = self.local.file_system().clone();
        let dir = self.dir().to_path_buf();
        let cleaned_path = |extension| path_with_suffix(&dir, base, extension, CLEANED_SUFFIX);
        let log_file =
            Rc::new(open_empty(&fs, &cleaned_path(LOG_EXTENSION), FileKind::SegmentData).await?);
        let appender = Appender::open(log_file.clone(), 0).await?;
        let mut cleaned = Segment::empty(base, log_file.clone());
        let mut bytes_since_index = 0u64;
        let mut changed = false;
        let mut position = 0u64;
        loop {
            let mut read = 0usize;
            let mut outputs: Vec<(BatchHeader, Bytes)> = Vec::new();
            let mut error = None;
            let next = segment::scan(
                &*located.file,
                position,
                located.size,
                READ_CHUNK,
                false,
                |_, header, bytes| {
                    if read >= READ_CHUNK {
                        return false;
                    }
                    read += bytes.len();
                    match self.filter(cleaner, header, &bytes, rewrite, stats) {
                        Ok(FilteredBatch::Unchanged) => outputs.push((*header, bytes)),
                        Ok(FilteredBatch::Rewritten(rebuilt)) => {
                            changed = true;
                            let rebuilt = Bytes::from(rebuilt);
                            outputs.push((BatchHeader::parse(&rebuilt), rebuilt));
                        }
                        Ok(FilteredBatch::Dropped) => changed = true,
                        Err(failed) => {
                            error = Some(failed);
                            return false;
                        }
                    }
                    true
                },
            )
            .await?;
            if let Some(failed) = error {
                return Err(failed);
            }
            let mut written = 0u64;
            for (header, bytes) in outputs {
                let at = appender.logical_size();
                // Offsets may jump (removed records): the indexing rule only needs them to grow.
                cleaned.last_offset = header.base_offset - 1;
                cleaned.record_batch(
                    at,
                    &header,
                    rewrite.index_interval_bytes,
                    &mut bytes_since_index,
                );
                written += bytes.len() as u64;
                appender.append(bytes);
            }
            appender.flush().await?;
            stats.bytes_read += read as u64;
            stats.bytes_written += written;
            pacer
                .pause(cleaner.throttle.charge(read as u64 + written))
                .await;
            if next == position || next >= located.size {
                break;
            }
            position = next;
        }
        if !changed {
            drop(appender);
            discard(&fs, &dir, base).await;
            return Ok(false);
        }
        cleaned.add_final_time_entry();
        segment::finalize(&appender).await?;
        cleaned.size = appender.logical_size();
        drop(appender);
        for (extension, entries) in [
            (
                INDEX_EXTENSION,
                encode_entries(cleaned.index.as_deref(), |entry| entry.encode().to_vec()),
            ),
            (
                TIME_INDEX_EXTENSION,
                encode_entries(cleaned.time_index.as_deref(), |entry| {
                    entry.encode().to_vec()
                }),
            ),
        ] {
            let file = Rc::new(open_empty(&fs, &cleaned_path(extension), FileKind::Small).await?);
            segment::write_whole(file.clone(), &entries).await?;
            file.sync_data().await?;
        }
        // Step 2 of the swap protocol: the commit point.
        let swap_path = path_with_suffix(&dir, base, LOG_EXTENSION, SWAP_SUFFIX);
        fs.rename(&cleaned_path(LOG_EXTENSION), &swap_path).await?;
        let closed = self.state.borrow().closed;
        if closed || !self.local.install_cleaned(summary.size, cleaned) {
            // The segment changed meanwhile: this swap is abandoned.
            let _ = fs.remove_file(&swap_path).await;
            discard(&fs, &dir, base).await;
            return Ok(false);
        }
        for extension in [INDEX_EXTENSION, TIME_INDEX_EXTENSION] {
            fs.rename(
                &cleaned_path(extension),
                &dir.join(segment::file_name(base, extension)),
            )
            .await?;
        }
        fs.rename(
            &swap_path,
            &dir.join(segment::file_name(base, LOG_EXTENSION)),
        )
        .await?;
        // Step 6: the swap is durable before the next segment is cleaned.
        fs.sync_dir(&dir).await?;
        self.local.release_cleaned_file(base, &log_file);
        stats.segments_rewritten += 1;
        Ok(true)
    }

    /// Step 2's rule for one batch.
    fn filter(
        &self,
        cleaner: &Cleaner,
        header: &BatchHeader,
        bytes: &[u8],
        rewrite: &Rewrite,
        stats: &mut CleanStats,
    ) -> Result<FilteredBatch, StorageError> {
        let retain_empty = header.has_producer_id()
            && self.with_producer_state(|producers| {
                producers.get(header.producer_id).is_some_and(|entry| {
                    entry
                        .batches
                        .back()
                        .is_some_and(|last| last.last_offset == header.last_offset())
                })
            });
        let old_tombstones = header.max_timestamp < rewrite.tombstone_horizon;
        let aborted = rewrite.aborted.holds(header);
        let map = &cleaner.map;
        let mut read = 0u64;
        let mut removed = 0u64;
        let filtered = filter_batch(header, bytes, retain_empty, |record| {
            read += 1;
            let keep = !aborted
                && match record.key {
                    None => false,
                    Some(key) => {
                        let latest = map.get(key).is_none_or(|offset| record.offset >= offset);
                        let expired_tombstone =
                            record.value_is_null && old_tombstones && record.offset < rewrite.end;
                        latest && !expired_tombstone
                    }
                };
            removed += u64::from(!keep);
            keep
        })?;
        stats.records_read += read;
        stats.records_removed += removed;
        Ok(filtered)
    }
}

fn encode_entries<Entry>(entries: Option<&[Entry]>, encode: impl Fn(&Entry) -> Vec<u8>) -> Vec<u8> {
    entries.unwrap_or(&[]).iter().flat_map(encode).collect()
}

/// Opens (creating) `path`, emptied.
async fn open_empty<F: FileSystem>(
    fs: &F,
    path: &std::path::Path,
    kind: FileKind,
) -> io::Result<F::File> {
    let file = fs.open(path, kind, true).await?;
    if file.size().await? > 0 {
        file.truncate(0).await?;
    }
    Ok(file)
}

/// Removes the `.cleaned` files of the segment at `base` (best effort: the next open removes
/// leftovers).
async fn discard<F: FileSystem>(fs: &F, dir: &std::path::Path, base: i64) {
    for extension in [LOG_EXTENSION, INDEX_EXTENSION, TIME_INDEX_EXTENSION] {
        let _ = fs
            .remove_file(&path_with_suffix(dir, base, extension, CLEANED_SUFFIX))
            .await;
    }
}
