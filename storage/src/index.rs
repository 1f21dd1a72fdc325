//! Sparse segment indexes (Kafka's format).
//!
//! # `.index` (offset index)
//! A sequence of 8-byte entries `(relative offset u32, file position u32)`, big-endian, where the
//! relative offset is `offset - segment base offset` of the *first* offset of a batch and the
//! position is where that batch starts in the `.log`. An entry is added each time more than
//! `index_interval_bytes` of log were written since the previous one. Both fields are strictly
//! increasing. A lookup binary-searches the largest entry whose offset is <= the target and the
//! caller scans the log forward from its position.
//!
//! # `.timeindex` (time index)
//! A sequence of 12-byte entries `(timestamp i64, relative offset u32)`, big-endian: "the largest
//! timestamp seen so far in the segment, and the (relative) last offset of the batch holding it".
//! Entries are added at the same points as offset index entries, and once more when a segment
//! stops being active, but only when the timestamp is larger than the last entry's; both fields are
//! monotonic. A lookup for timestamp `t` takes the largest entry with timestamp <= `t`: no batch
//! before that entry's batch has a timestamp >= `t`... except the entry's own batch, which the
//! scan starts at (see `Log::offset_for_timestamp`).
//!
//! The files are written with an [`Appender`](crate::appender::Appender) and are only flushed when
//! a segment is rolled, on close and on fsync; the active segment's indexes are rebuilt on unclean
//! recovery, so a stale index file on disk is harmless.

pub const OFFSET_ENTRY_SIZE: usize = 8;
pub const TIME_ENTRY_SIZE: usize = 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

impl OffsetEntry {
    pub fn encode(&self) -> [u8; OFFSET_ENTRY_SIZE] {
        let mut bytes = [0u8; OFFSET_ENTRY_SIZE];
        bytes[..4].copy_from_slice(&self.relative_offset.to_be_bytes());
        bytes[4..].copy_from_slice(&self.position.to_be_bytes());
        bytes
    }
}

impl TimeEntry {
    pub fn encode(&self) -> [u8; TIME_ENTRY_SIZE] {
        let mut bytes = [0u8; TIME_ENTRY_SIZE];
        bytes[..8].copy_from_slice(&self.timestamp.to_be_bytes());
        bytes[8..].copy_from_slice(&self.relative_offset.to_be_bytes());
        bytes
    }
}

/// Decodes an offset index file. Returns `None` when it is inconsistent (size not a multiple of
/// the entry size, entries not strictly increasing, or a position beyond `log_size`).
pub fn decode_offset_index(bytes: &[u8], log_size: u64) -> Option<Vec<OffsetEntry>> {
    if !bytes.len().is_multiple_of(OFFSET_ENTRY_SIZE) {
        return None;
    }
    let mut entries: Vec<OffsetEntry> = Vec::with_capacity(bytes.len() / OFFSET_ENTRY_SIZE);
    for encoded in bytes.chunks_exact(OFFSET_ENTRY_SIZE) {
        let entry = OffsetEntry {
            relative_offset: u32::from_be_bytes(encoded[..4].try_into().unwrap()),
            position: u32::from_be_bytes(encoded[4..].try_into().unwrap()),
        };
        if let Some(last) = entries.last() {
            if entry.relative_offset <= last.relative_offset || entry.position <= last.position {
                return None;
            }
        }
        if entry.position as u64 >= log_size {
            return None;
        }
        entries.push(entry);
    }
    Some(entries)
}

/// Decodes a time index file; `None` when inconsistent.
pub fn decode_time_index(bytes: &[u8]) -> Option<Vec<TimeEntry>> {
    if !bytes.len().is_multiple_of(TIME_ENTRY_SIZE) {
        return None;
    }
    let mut entries: Vec<TimeEntry> = Vec::with_capacity(bytes.len() / TIME_ENTRY_SIZE);
    for encoded in bytes.chunks_exact(TIME_ENTRY_SIZE) {
        let entry = TimeEntry {
            timestamp: i64::from_be_bytes(encoded[..8].try_into().unwrap()),
            relative_offset: u32::from_be_bytes(encoded[8..].try_into().unwrap()),
        };
        if let Some(last) = entries.last() {
            if entry.timestamp <= last.timestamp || entry.relative_offset < last.relative_offset {
                return None;
            }
        }
        entries.push(entry);
    }
    Some(entries)
}

/// Position to start scanning from for `relative_offset`: the position of the largest entry whose
/// offset is <= the target, or 0.
pub fn lookup_offset(entries: &[OffsetEntry], relative_offset: u32) -> u32 {
    let after = entries.partition_point(|entry| entry.relative_offset <= relative_offset);
    if after == 0 {
        0
    } else {
        entries[after - 1].position
    }
}

/// Relative offset to start scanning from for `timestamp`: the offset of the largest entry whose
/// timestamp is <= the target, or 0.
pub fn lookup_time(entries: &[TimeEntry], timestamp: i64) -> u32 {
    let after = entries.partition_point(|entry| entry.timestamp <= timestamp);
    if after == 0 {
        0
    } else {
        entries[after - 1].relative_offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup() {
        let es: Vec<_> = [(0, 0), (10, 100), (20, 200)]
            .iter()
            .map(|&(o, p)| OffsetEntry {
                relative_offset: o,
                position: p,
            })
            .collect();
        assert_eq!(lookup_offset(&es, 0), 0);
        assert_eq!(lookup_offset(&es, 9), 0);
        assert_eq!(lookup_offset(&es, 10), 100);
        assert_eq!(lookup_offset(&es, 25), 200);
        assert_eq!(lookup_offset(&[], 25), 0);
        let bytes: Vec<u8> = es.iter().flat_map(|e| e.encode()).collect();
        assert_eq!(decode_offset_index(&bytes, 1000).unwrap(), es);
        assert!(decode_offset_index(&bytes, 150).is_none());
        assert!(decode_offset_index(&bytes[..7], 1000).is_none());
    }

    #[test]
    fn time_lookup() {
        let es: Vec<_> = [(100, 0), (200, 5), (300, 9)]
            .iter()
            .map(|&(t, o)| TimeEntry {
                timestamp: t,
                relative_offset: o,
            })
            .collect();
        assert_eq!(lookup_time(&es, 50), 0);
        assert_eq!(lookup_time(&es, 200), 5);
        assert_eq!(lookup_time(&es, 299), 5);
        assert_eq!(lookup_time(&es, 1000), 9);
        let bytes: Vec<u8> = es.iter().flat_map(|e| e.encode()).collect();
        assert_eq!(decode_time_index(&bytes).unwrap(), es);
    }
}
