//! The fetch handler's request budget (KIP-74): `max_bytes` across every partition of a response, whole
//! batches only.

use crate::partition::isolation::copy_at;
use crate::partition::requests::FetchOutcome;
use bytes::Bytes;

/// Applies the request's `max_bytes` to the whole response, in request order, as Kafka does (KIP-74): whole
/// batches are kept while they fit; the first batch of the first partition with data is kept even when it
/// alone exceeds the budget (so a consumer always progresses); after the first batch that does not fit, a
/// partition keeps nothing more (its records stay contiguous from the fetch offset).
pub(super) fn apply_request_budget(outcomes: &mut [Option<FetchOutcome>], max_bytes: usize) {
    let mut remaining = max_bytes;
    let mut first = true;
    for outcome in outcomes.iter_mut().flatten() {
        let batches = batch_sizes(&outcome.records);
        let mut keep_bytes = 0usize;
        for size in batches {
            if size <= remaining || first {
                remaining = remaining.saturating_sub(size);
                keep_bytes += size;
                first = false;
            } else {
                remaining = 0;
                break;
            }
        }
        truncate_parts(&mut outcome.records, keep_bytes);
    }
}

/// Sizes of the whole batches laid end to end in `parts` (a batch may span parts: a stored batch is an
/// owned header and a body slice). A trailing fragment too short to hold a batch's length is not counted.
fn batch_sizes(parts: &[Bytes]) -> Vec<usize> {
    let total: usize = parts.iter().map(Bytes::len).sum();
    let mut sizes = Vec::new();
    let mut position = 0usize;
    while position + storage::batch::LOG_OVERHEAD <= total {
        let mut prefix = [0u8; storage::batch::LOG_OVERHEAD];
        copy_at(parts, position, &mut prefix);
        let length = i32::from_be_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]);
        let size = storage::batch::LOG_OVERHEAD + length.max(0) as usize;
        if position + size > total || length <= 0 {
            break;
        }
        sizes.push(size);
        position += size;
    }
    sizes
}

/// Keeps the first `keep` bytes of the concatenation of `parts` (slicing, not copying).
fn truncate_parts(parts: &mut Vec<Bytes>, keep: usize) {
    let mut left = keep;
    let mut kept = 0;
    for part in parts.iter_mut() {
        if left == 0 {
            break;
        }
        if part.len() > left {
            part.truncate(left);
        }
        left -= part.len();
        kept += 1;
    }
    parts.truncate(kept);
}
