//! Reads of whole batches across segments (the read path below the batch cache), with read-ahead for
//! sequential readers (`read_ahead`).
//!
//! A read locates the segment holding its first offset (the offset index names a position at or
//! before the batch), or — continuing a sequential reader — starts exactly where that reader's last
//! read ended. It takes batches from the read-ahead chunks while they hold them, then from the file,
//! and goes on into the next segment until it has `max_bytes` or reaches `upper`.

use super::LocalLog;
use crate::batch::BatchHeader;
use crate::io::FileSystem;
use crate::segment::scan;
use bytes::Bytes;
use std::io;

impl<F: FileSystem> LocalLog<F> {
    /// Whole batches from the one containing `from`, up to `max_bytes` (at least one with
    /// `min_one_batch`), none at or beyond `upper`: slices of what was read from the segment files
    /// (a batch may be several slices; the buffers concatenated are the batches).
    pub(crate) async fn read(
        &self,
        from: i64,
        max_bytes: usize,
        upper: i64,
        min_one_batch: bool,
    ) -> io::Result<Vec<Bytes>> {
        let mut parts: Vec<Bytes> = Vec::new();
        let total = std::cell::Cell::new(0usize);
        let mut current = from;
        let mut done = false;
        while !done {
            let Some(located) = self.locate(current).await? else {
                break;
            };
            let resume = self
                .read_ahead
                .begin(located.base, &*located.file, located.size, current);
            let start = resume
                .position
                .filter(|position| *position <= located.size)
                .unwrap_or(located.position);
            // The offset after the last batch taken from this segment, and where that batch ended.
            let mut taken_to: Option<(i64, u64)> = None;
            let mut visit = |position: u64, header: &BatchHeader, batch: &[Bytes]| {
                if header.last_offset() < current {
                    return true;
                }
                if header.last_offset() >= upper {
                    done = true;
                    return false;
                }
                let size = header.total_size();
                if total.get() + size > max_bytes {
                    if parts.is_empty() && min_one_batch {
                        total.set(total.get() + size);
                        parts.extend_from_slice(batch);
                        taken_to = Some((header.last_offset() + 1, position + size as u64));
                    }
                    done = true;
                    return false;
                }
                total.set(total.get() + size);
                parts.extend_from_slice(batch);
                taken_to = Some((header.last_offset() + 1, position + size as u64));
                true
            };
            let (reached, stopped) = self
                .read_ahead
                .scan(located.base, start, located.size, &mut visit)
                .await;
            if !stopped {
                let chunk = max_bytes
                    .saturating_sub(total.get())
                    .clamp(16 << 10, 4 << 20)
                    + (16 << 10);
                scan(
                    &*located.file,
                    reached,
                    located.size,
                    chunk,
                    false,
                    |position, header, bytes| visit(position, header, std::slice::from_ref(&bytes)),
                )
                .await?;
            }
            if let Some((next_offset, next_position)) = taken_to {
                self.read_ahead.end(
                    located.base,
                    &*located.file,
                    located.size,
                    &resume,
                    next_offset,
                    next_position,
                );
            }
            if done {
                break;
            }
            match self.next_segment_base(located.base) {
                Some(next_base) => current = next_base.max(current),
                None => break,
            }
        }
        Ok(parts)
    }
}
