//! What a read_committed read needs from the batches it read: the offset after the last of them, the
//! upper bound of the aborted transactions its fetch response lists (Kafka's
//! `LogSegment.fetchUpperBoundOffset`: the next offset after the bytes returned).
//!
//! A read gives whole batches laid end to end over one or more buffers (a cached batch is two: its
//! header and its body), so a header may start in one buffer and end in the next. Of each batch's
//! header only the first 27 bytes matter here (big-endian):
//!
//! ```text
//! base_offset i64 | batch_length i32 | partition_leader_epoch i32 | magic i8 | crc u32 |
//! attributes i16 | last_offset_delta i32
//! ```
//!
//! and a batch is `12 + batch_length` bytes long.

use bytes::Bytes;
use storage::batch::LOG_OVERHEAD;
use storage::types::Offset;

/// Bytes of a batch header up to the end of `last_offset_delta`.
const PREFIX: usize = 27;
const LAST_OFFSET_DELTA_AT: usize = 23;

/// The offset after the last whole batch in `parts` (`last_offset + 1`); `None` when there is no whole
/// batch. A trailing fragment (never produced by a read) is ignored.
pub fn end_of_batches(parts: &[Bytes]) -> Option<Offset> {
    let total: usize = parts.iter().map(Bytes::len).sum();
    let mut position = 0usize;
    let mut end = None;
    while position + PREFIX <= total {
        let mut prefix = [0u8; PREFIX];
        copy_at(parts, position, &mut prefix);
        let base_offset = i64::from_be_bytes(prefix[0..8].try_into().expect("8 bytes"));
        let length = i32::from_be_bytes(prefix[8..12].try_into().expect("4 bytes"));
        let last_offset_delta = i32::from_be_bytes(
            prefix[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
                .try_into()
                .expect("4 bytes"),
        );
        if length <= 0 {
            break;
        }
        let size = LOG_OVERHEAD + length as usize;
        if position + size > total {
            break;
        }
        end = Some(Offset(base_offset + i64::from(last_offset_delta) + 1));
        position += size;
    }
    end
}

/// Copies `out.len()` bytes starting at `position` of the concatenation of `parts`.
pub(crate) fn copy_at(parts: &[Bytes], mut position: usize, out: &mut [u8]) {
    let mut filled = 0;
    for part in parts {
        if filled == out.len() {
            break;
        }
        if position >= part.len() {
            position -= part.len();
            continue;
        }
        let take = (part.len() - position).min(out.len() - filled);
        out[filled..filled + take].copy_from_slice(&part[position..position + take]);
        filled += take;
        position = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage::batch::testing::simple_batch;

    fn batch_at(base_offset: i64, records: usize) -> Bytes {
        let mut batch = simple_batch(records, 10, 1_000);
        storage::batch::set_base_offset(&mut batch, base_offset);
        Bytes::from(batch)
    }

    #[test]
    fn the_end_is_after_the_last_batch_even_across_split_buffers() {
        assert_eq!(end_of_batches(&[]), None);
        let first = batch_at(5, 3);
        let second = batch_at(8, 4);
        assert_eq!(
            end_of_batches(std::slice::from_ref(&first)),
            Some(Offset(8))
        );
        // Header and body in separate buffers (as the batch cache keeps them), split mid-prefix too.
        let parts = vec![
            first.slice(..61),
            first.slice(61..),
            second.slice(..20),
            second.slice(20..),
        ];
        assert_eq!(end_of_batches(&parts), Some(Offset(12)));
        // A truncated trailing batch does not count.
        let cut = vec![first.clone(), second.slice(..40)];
        assert_eq!(end_of_batches(&cut), Some(Offset(8)));
    }
}
