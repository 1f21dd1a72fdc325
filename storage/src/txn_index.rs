//! The aborted-transaction index of a segment (Kafka's `TransactionIndex`): one entry per ABORT
//! marker stored in the segment, so that a read_committed fetch learns which producers' data to
//! skip without reading the log.
//!
//! # File `<20-digit segment base>.txnindex`
//! Created when the segment's first entry is written (a segment without aborted transactions has
//! no file). A sequence of 34-byte entries, big-endian, in marker-offset order:
//!
//! ```text
//! version             i16   (0)
//! producer_id         i64
//! first_offset        i64   first offset of the transaction's data in this partition
//! last_offset         i64   offset of the ABORT marker (in this segment)
//! last_stable_offset  i64   the partition's LSO once the transaction completed, ignoring the
//!                           high watermark: the first offset of the oldest other open
//!                           transaction, else last_offset + 1
//! ```
//!
//! # Invariants
//! * An entry lives in the segment holding its marker; entries of a segment are kept in memory
//!   (`Segment::aborted`, loaded at open) and the file mirrors them.
//! * The active segment's file is appended to as markers are written and fsynced with the segment
//!   (flush, roll, close). Recovery rebuilds the entries of every recovered segment from the
//!   producer-state replay (`loader`), truncation drops entries at or beyond the cut, deleted
//!   segments take their file along (`.deleted` renames) and the cleaner's swap keeps it (the
//!   cleaned segment keeps its base and its markers).

use crate::txn::AbortedTxn;
use crate::types::Offset;

/// The file extension of a segment's aborted-transaction index.
pub(crate) const TXN_INDEX_EXTENSION: &str = "txnindex";
/// Bytes per entry.
pub const TXN_ENTRY_SIZE: usize = 34;
const TXN_INDEX_VERSION: i16 = 0;

/// One entry of a `.txnindex` file (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxnEntry {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl AbortedTxnEntry {
    pub fn encode(&self) -> [u8; TXN_ENTRY_SIZE] {
        let mut out = [0u8; TXN_ENTRY_SIZE];
        out[0..2].copy_from_slice(&TXN_INDEX_VERSION.to_be_bytes());
        out[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        out[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        out[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        out[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        out
    }

    /// What a fetch reports for this entry.
    pub fn aborted_txn(&self) -> AbortedTxn {
        AbortedTxn {
            producer_id: self.producer_id,
            first_offset: Offset(self.first_offset),
        }
    }
}

/// Encodes entries as a whole file.
pub fn encode_all(entries: &[AbortedTxnEntry]) -> Vec<u8> {
    entries.iter().flat_map(|entry| entry.encode()).collect()
}

/// Decodes a whole file; `None` when its size is not a multiple of the entry size, an entry has an
/// unknown version, or an entry's offsets are out of order (the segment's entries are then rebuilt).
pub fn decode_all(bytes: &[u8]) -> Option<Vec<AbortedTxnEntry>> {
    if !bytes.len().is_multiple_of(TXN_ENTRY_SIZE) {
        return None;
    }
    let i64_at =
        |chunk: &[u8], at: usize| i64::from_be_bytes(chunk[at..at + 8].try_into().unwrap());
    let mut entries: Vec<AbortedTxnEntry> = Vec::with_capacity(bytes.len() / TXN_ENTRY_SIZE);
    for chunk in bytes.chunks_exact(TXN_ENTRY_SIZE) {
        if i16::from_be_bytes([chunk[0], chunk[1]]) != TXN_INDEX_VERSION {
            return None;
        }
        let entry = AbortedTxnEntry {
            producer_id: i64_at(chunk, 2),
            first_offset: i64_at(chunk, 10),
            last_offset: i64_at(chunk, 18),
            last_stable_offset: i64_at(chunk, 26),
        };
        let ordered = entry.first_offset <= entry.last_offset
            && entries
                .last()
                .is_none_or(|last| last.last_offset < entry.last_offset);
        if !ordered {
            return None;
        }
        entries.push(entry);
    }
    Some(entries)
}

/// Kafka's `TransactionIndex.collectAbortedTxns` over one segment's entries: appends to `out` the
/// entries with `last_offset >= start && first_offset < upper`; returns true when the search is
/// complete (an entry's `last_stable_offset >= upper`: no later entry can concern the range).
pub fn collect(
    entries: &[AbortedTxnEntry],
    start: i64,
    upper: i64,
    out: &mut Vec<AbortedTxnEntry>,
) -> bool {
    for entry in entries {
        if entry.last_offset >= start && entry.first_offset < upper {
            out.push(*entry);
        }
        if entry.last_stable_offset >= upper {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(producer_id: i64, first: i64, last: i64, lso: i64) -> AbortedTxnEntry {
        AbortedTxnEntry {
            producer_id,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    #[test]
    fn entries_round_trip_in_kafkas_layout() {
        let entries = vec![entry(7, 0, 10, 11), entry(8, 5, 20, 21)];
        let bytes = encode_all(&entries);
        assert_eq!(bytes.len(), 2 * TXN_ENTRY_SIZE);
        assert_eq!(&bytes[0..2], &[0, 0]);
        assert_eq!(&bytes[2..10], &7i64.to_be_bytes());
        assert_eq!(&bytes[18..26], &10i64.to_be_bytes());
        assert_eq!(decode_all(&bytes).unwrap(), entries);
        assert!(decode_all(&bytes[..40]).is_none());
        let mut bad_version = bytes.clone();
        bad_version[1] = 1;
        assert!(decode_all(&bad_version).is_none());
        assert_eq!(decode_all(&[]).unwrap(), vec![]);
    }

    #[test]
    fn collect_stops_at_the_upper_bound() {
        let entries = vec![entry(1, 0, 4, 5), entry(2, 6, 9, 10), entry(3, 12, 15, 16)];
        let mut out = Vec::new();
        assert!(collect(&entries, 5, 10, &mut out));
        assert_eq!(out, vec![entries[1]]);
        out.clear();
        assert!(!collect(&entries, 0, 100, &mut out));
        assert_eq!(out.len(), 3);
        out.clear();
        // a transaction straddling the start is reported
        assert!(collect(&entries, 3, 4, &mut out));
        assert_eq!(out, vec![entries[0]]);
    }
}
