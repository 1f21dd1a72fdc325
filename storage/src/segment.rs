//! One log segment (Kafka's `LogSegment`): its `.log` file of record batches, its `.index` and
//! `.timeindex`, the writers of the active segment, the recovery of one segment and lookups within
//! it.
//!
//! # Files
//! A segment based at offset `base` is three files named by the 20-digit, zero-padded base
//! ([`file_name`]):
//! ```text
//! 00000000000000001234.log        record batches, exactly as stored by `Log::append`
//! 00000000000000001234.index      offset index (see `index`)
//! 00000000000000001234.timeindex  time index (see `index`)
//! 00000000000000001234.txnindex   aborted transactions, only once one is written (see `txn_index`)
//! ```
//! The `.log` file is the concatenation of the record batches (see `batch`) whose offsets lie in
//! `[base, next segment's base)`. With O_DIRECT files the active segment's file runs ahead of its
//! logical size: zero padding to a page, and up to [`reserve_window`] bytes reserved ahead of the
//! appends (see `appender`). A roll and a clean close truncate it to its logical size ([`finalize`]);
//! after a crash, recovery cuts the zeros.
//!
//! # Invariants
//! * Offsets are contiguous within the active segment: each batch starts at the previous one's
//!   last offset + 1, the first at `base`, and every offset minus `base` fits a `u32`. A segment
//!   rewritten by the log cleaner (`cleaner`, never the active one) keeps its base and its batches'
//!   offsets but may have gaps: there offsets only increase.
//! * `last_offset` is the last offset stored (`base - 1` when empty); `size` counts only bytes whose
//!   write completed.
//! * Index entries follow Kafka's indexing rule ([`index_entries_for_batch`]), the same for appends
//!   and recovery, and strictly increase (asserted as they are added).
//!
//! # Recovery of one segment
//! [`recover`] scans every batch (length, magic, CRC, offset continuity), cuts the torn, corrupt or
//! zero-padded tail (logged at WARN: position, bytes and offsets cut) and rewrites both index files
//! whole. [`scan_clean_tail`] is the cheap check after a clean shutdown: only the batches after the
//! last offset index entry.

use crate::appender::Appender;
use crate::batch::{self, BatchCheck, BatchHeader, LOG_OVERHEAD};
use crate::error::StorageError;
use crate::index::{self, OffsetEntry, TimeEntry};
use crate::io::StorageFile;
use crate::txn_index::AbortedTxnEntry;
use bytes::Bytes;
use std::io;
use std::path::Path;
use std::rc::Rc;

pub(crate) const LOG_EXTENSION: &str = "log";
pub(crate) const INDEX_EXTENSION: &str = "index";
pub(crate) const TIME_INDEX_EXTENSION: &str = "timeindex";

/// How far ahead of its appends the active segment's file is reserved (O_DIRECT only; see
/// `appender`): one `fallocate` per window appended, and at most a window of zeros past the logical
/// size while the segment is active. A sixteenth of the segment size, at most 4 MiB; segments under
/// 1 MiB (windows under 64 KiB) are not reserved: their appends take the io-wq path.
pub(crate) fn reserve_window(segment_bytes: u64) -> u64 {
    let window = (segment_bytes / 16).min(4 << 20);
    if window < 64 << 10 {
        0
    } else {
        window
    }
}

/// How much of a segment recovery and producer-state replay read at a time.
pub(crate) const RECOVERY_READ_BYTES: usize = 1 << 20;

/// `<20-digit base>.<extension>`: the name of a segment's (or a snapshot's) file.
pub(crate) fn file_name(base: i64, extension: &str) -> String {
    format!("{base:020}.{extension}")
}

/// The offset and extension of a file named as [`file_name`] names them; `None` for other names.
pub(crate) fn parse_file_name(name: &str) -> Option<(i64, &str)> {
    let (number, extension) = name.split_once('.')?;
    if number.len() != 20 || !number.bytes().all(|digit| digit.is_ascii_digit()) {
        return None;
    }
    Some((number.parse().ok()?, extension))
}

pub(crate) struct Segment<File> {
    pub(crate) base: i64,
    /// The active segment's `.log` file, held open; `None` for inactive segments, whose file is
    /// opened on demand through the log's `SegmentFilePool`.
    pub(crate) file: Option<Rc<File>>,
    /// Readable bytes (writes completed).
    pub(crate) size: u64,
    /// Last offset in the segment; `base - 1` when empty.
    pub(crate) last_offset: i64,
    pub(crate) max_timestamp: i64,
    /// Last offset of the batch holding `max_timestamp` (-1: none).
    pub(crate) offset_of_max_timestamp: i64,
    /// Loaded lazily for inactive segments (the file is read whole and closed at once); always
    /// present for the active one.
    pub(crate) index: Option<Vec<OffsetEntry>>,
    pub(crate) time_index: Option<Vec<TimeEntry>>,
    /// The aborted-transaction index entries of the markers in this segment, in offset order
    /// (always in memory; the `.txnindex` file mirrors them: see `txn_index`).
    pub(crate) aborted: Vec<AbortedTxnEntry>,
}

impl<File> Segment<File> {
    /// A new, empty active segment (a roll).
    pub(crate) fn empty(base: i64, file: Rc<File>) -> Self {
        Segment {
            base,
            file: Some(file),
            size: 0,
            last_offset: base - 1,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            index: Some(Vec::new()),
            time_index: Some(Vec::new()),
            aborted: Vec::new(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.last_offset < self.base
    }

    fn last_time_entry_timestamp(&self) -> Option<i64> {
        self.time_index
            .as_ref()
            .and_then(|entries| entries.last())
            .map(|entry| entry.timestamp)
    }

    /// Where to start scanning for `offset`: the position the offset index names for it (0 when
    /// the index is not loaded or has no entry at or below it).
    pub(crate) fn scan_position(&self, offset: i64) -> u64 {
        let relative = (offset - self.base).clamp(0, u32::MAX as i64) as u32;
        index::lookup_offset(self.index.as_deref().unwrap_or(&[]), relative) as u64
    }

    /// Records a batch appended at `position` (the active segment): last offset, max timestamp and
    /// the in-memory index entries the indexing rule adds, which it returns for the index files.
    pub(crate) fn record_batch(
        &mut self,
        position: u64,
        header: &BatchHeader,
        index_interval_bytes: u32,
        bytes_since_index: &mut u64,
    ) -> (Option<OffsetEntry>, Option<TimeEntry>) {
        let last_time_entry = self.last_time_entry_timestamp();
        let mut cursor = IndexCursor {
            bytes_since_index: *bytes_since_index,
            max_timestamp: self.max_timestamp,
            offset_of_max_timestamp: self.offset_of_max_timestamp,
        };
        let (offset_entry, time_entry) = index_entries_for_batch(
            self.base,
            position,
            header,
            index_interval_bytes,
            &mut cursor,
            last_time_entry,
        );
        assert!(
            header.base_offset == self.last_offset + 1,
            "batch at {} appended after offset {}",
            header.base_offset,
            self.last_offset
        );
        self.max_timestamp = cursor.max_timestamp;
        self.offset_of_max_timestamp = cursor.offset_of_max_timestamp;
        self.last_offset = header.last_offset();
        *bytes_since_index = cursor.bytes_since_index;
        if let Some(entry) = offset_entry {
            let entries = self.index.get_or_insert_with(Vec::new);
            assert!(entries
                .last()
                .is_none_or(|last| last.relative_offset < entry.relative_offset
                    && last.position < entry.position));
            entries.push(entry);
        }
        if let Some(entry) = time_entry {
            let entries = self.time_index.get_or_insert_with(Vec::new);
            assert!(entries
                .last()
                .is_none_or(|last| last.timestamp < entry.timestamp
                    && last.relative_offset <= entry.relative_offset));
            entries.push(entry);
        }
        (offset_entry, time_entry)
    }

    /// The time index entry a segment gets when it stops being active (its max timestamp, unless
    /// the last entry already holds it), added to the in-memory time index.
    pub(crate) fn add_final_time_entry(&mut self) -> Option<TimeEntry> {
        if self.offset_of_max_timestamp < 0
            || self
                .last_time_entry_timestamp()
                .is_some_and(|timestamp| timestamp >= self.max_timestamp)
        {
            return None;
        }
        let entry = TimeEntry {
            timestamp: self.max_timestamp,
            relative_offset: (self.offset_of_max_timestamp - self.base) as u32,
        };
        self.time_index.get_or_insert_with(Vec::new).push(entry);
        Some(entry)
    }
}

/// The active segment's writers: appenders of its three files and the indexing state.
pub(crate) struct SegmentWriter<File: StorageFile> {
    pub(crate) log: Rc<Appender<File>>,
    pub(crate) index: Rc<Appender<File>>,
    pub(crate) time_index: Rc<Appender<File>>,
    /// Log bytes written since the last offset index entry.
    pub(crate) bytes_since_index: u64,
    /// Time the segment's first batch was appended (its first batch's max timestamp after a reopen).
    pub(crate) first_append_ms: Option<i64>,
}

/// What the indexing rule tracks while batches are appended to, or recovered into, a segment.
struct IndexCursor {
    bytes_since_index: u64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
}

/// Kafka's indexing rule, shared by appends and recovery: updates the max timestamp and returns
/// the entries to add for the batch at `position`.
fn index_entries_for_batch(
    base: i64,
    position: u64,
    header: &BatchHeader,
    index_interval_bytes: u32,
    cursor: &mut IndexCursor,
    last_time_entry: Option<i64>,
) -> (Option<OffsetEntry>, Option<TimeEntry>) {
    if header.max_timestamp > cursor.max_timestamp {
        cursor.max_timestamp = header.max_timestamp;
        cursor.offset_of_max_timestamp = header.last_offset();
    }
    let mut entries = (None, None);
    if cursor.bytes_since_index > index_interval_bytes as u64 {
        entries.0 = Some(OffsetEntry {
            relative_offset: (header.base_offset - base) as u32,
            position: position as u32,
        });
        if last_time_entry.is_none_or(|timestamp| cursor.max_timestamp > timestamp) {
            entries.1 = Some(TimeEntry {
                timestamp: cursor.max_timestamp,
                relative_offset: (cursor.offset_of_max_timestamp - base) as u32,
            });
        }
        cursor.bytes_since_index = 0;
    }
    cursor.bytes_since_index += header.total_size() as u64;
    entries
}

/// Scans the batches of `file` in `[start, end)`, reading `chunk` bytes at a time, calling `visit`
/// with each complete (and, with `check_crc`, CRC-valid) batch's position, header and bytes until
/// it returns false. Returns the position after the last batch accepted by `visit` (where a scan
/// stops at a torn, corrupt or zero-padded tail).
pub(crate) async fn scan<File: StorageFile>(
    file: &File,
    start: u64,
    end: u64,
    chunk: usize,
    check_crc: bool,
    mut visit: impl FnMut(u64, &BatchHeader, Bytes) -> bool,
) -> io::Result<u64> {
    let mut position = start;
    let mut buffer = Bytes::new();
    let mut buffer_position = start;
    while position < end {
        let offset_in_buffer = (position - buffer_position) as usize;
        match batch::check_batch_at(&buffer[offset_in_buffer.min(buffer.len())..], check_crc) {
            BatchCheck::Valid(header) => {
                let size = header.total_size();
                let bytes = buffer.slice(offset_in_buffer..offset_in_buffer + size);
                if !visit(position, &header, bytes) {
                    return Ok(position);
                }
                position += size as u64;
            }
            BatchCheck::Incomplete => {
                let have = buffer.len().saturating_sub(offset_in_buffer);
                let mut need = chunk.max(LOG_OVERHEAD + 5);
                if have >= LOG_OVERHEAD {
                    let length_field = &buffer[offset_in_buffer + 8..offset_in_buffer + 12];
                    let length = i32::from_be_bytes(length_field.try_into().unwrap());
                    need = need.max(LOG_OVERHEAD + length.max(0) as usize);
                }
                let want = (need as u64).min(end - position) as usize;
                if want <= have {
                    break; // torn tail
                }
                buffer = file.read_at(position, want).await?;
                buffer_position = position;
                if buffer.len() <= have {
                    break;
                }
            }
            BatchCheck::Invalid(_) => break,
        }
    }
    Ok(position)
}

/// The position of the first batch in `[start, end)` whose last offset is at or after `offset`
/// (the end of the scan when there is none): where truncating "everything at and after `offset`"
/// cuts (a batch holding `offset` goes whole, as in Kafka).
pub(crate) async fn position_of_batch_holding<File: StorageFile>(
    file: &File,
    start: u64,
    end: u64,
    offset: i64,
) -> io::Result<u64> {
    let mut found = None;
    let scan_end = scan(
        file,
        start,
        end,
        RECOVERY_READ_BYTES,
        false,
        |position, header, _| {
            if header.last_offset() >= offset {
                found = Some(position);
                return false;
            }
            true
        },
    )
    .await?;
    Ok(found.unwrap_or(scan_end))
}

/// What a full scan of a segment found.
struct Recovered {
    valid_end: u64,
    last_offset: i64,
    cursor: IndexCursor,
    index: Vec<OffsetEntry>,
    time_index: Vec<TimeEntry>,
    first_timestamp: Option<i64>,
}

async fn scan_for_recovery<File: StorageFile>(
    file: &File,
    base: i64,
    file_size: u64,
    index_interval_bytes: u32,
    contiguous: bool,
) -> io::Result<Recovered> {
    let mut recovered = Recovered {
        valid_end: 0,
        last_offset: base - 1,
        cursor: IndexCursor {
            bytes_since_index: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
        },
        index: Vec::new(),
        time_index: Vec::new(),
        first_timestamp: None,
    };
    let mut expected = base;
    let end = scan(
        file,
        0,
        file_size,
        RECOVERY_READ_BYTES,
        true,
        |position, header, _| {
            // Offsets are contiguous within the active segment; the base offset is not covered by
            // the CRC, so this also catches damage there. A segment the cleaner rewrote (never the
            // active one) has gaps: there offsets need only increase.
            let in_order = if contiguous {
                header.base_offset == expected
            } else {
                header.base_offset >= expected
            };
            if !in_order || header.last_offset() - base > u32::MAX as i64 {
                return false;
            }
            expected = header.last_offset() + 1;
            recovered.last_offset = header.last_offset();
            recovered
                .first_timestamp
                .get_or_insert(header.max_timestamp);
            let last_time_entry = recovered.time_index.last().map(|entry| entry.timestamp);
            let (offset_entry, time_entry) = index_entries_for_batch(
                base,
                position,
                header,
                index_interval_bytes,
                &mut recovered.cursor,
                last_time_entry,
            );
            recovered.index.extend(offset_entry);
            recovered.time_index.extend(time_entry);
            true
        },
    )
    .await?;
    recovered.valid_end = end;
    Ok(recovered)
}

/// A segment's two index files.
pub(crate) struct IndexFiles<File> {
    pub(crate) index: Rc<File>,
    pub(crate) time_index: Rc<File>,
}

/// What [`recover`] leaves for the active segment's writer.
pub(crate) struct RecoveredWriters<File: StorageFile> {
    pub(crate) index: Rc<Appender<File>>,
    pub(crate) time_index: Rc<Appender<File>>,
    pub(crate) bytes_since_index: u64,
    pub(crate) first_timestamp: Option<i64>,
}

/// Full recovery of `segment`, whose `.log` is `log_file` (`log_size` bytes, at `log_path`): every
/// batch is checked, the damaged tail cut (WARN) and fsynced, both index files rewritten whole.
/// Sets the segment's size and max timestamp; for the active segment also its last offset and
/// in-memory indexes (an inactive one keeps the last offset its successor's base implies and
/// loads its indexes lazily).
pub(crate) async fn recover<File: StorageFile>(
    segment: &mut Segment<File>,
    log_file: &File,
    index_files: &IndexFiles<File>,
    log_path: &Path,
    log_size: u64,
    index_interval_bytes: u32,
    active: bool,
) -> io::Result<RecoveredWriters<File>> {
    let recovered = scan_for_recovery(
        log_file,
        segment.base,
        log_size,
        index_interval_bytes,
        active,
    )
    .await?;
    if recovered.valid_end < log_size {
        warn_truncation(log_file, log_path, &recovered, log_size).await;
        log_file.truncate(recovered.valid_end).await?;
        log_file.sync_data().await?;
    }
    segment.size = recovered.valid_end;
    segment.max_timestamp = recovered.cursor.max_timestamp;
    segment.offset_of_max_timestamp = recovered.cursor.offset_of_max_timestamp;
    let index_bytes: Vec<u8> = recovered
        .index
        .iter()
        .flat_map(|entry| entry.encode())
        .collect();
    let time_index_bytes: Vec<u8> = recovered
        .time_index
        .iter()
        .flat_map(|entry| entry.encode())
        .collect();
    let index = write_whole(index_files.index.clone(), &index_bytes).await?;
    let time_index = write_whole(index_files.time_index.clone(), &time_index_bytes).await?;
    if active {
        segment.last_offset = recovered.last_offset;
        segment.index = Some(recovered.index);
        segment.time_index = Some(recovered.time_index);
    }
    Ok(RecoveredWriters {
        index,
        time_index,
        bytes_since_index: recovered.cursor.bytes_since_index,
        first_timestamp: recovered.first_timestamp,
    })
}

/// The tail of a cleanly closed active segment, as [`scan_clean_tail`] found it.
pub(crate) struct CleanTail {
    pub(crate) last_offset: i64,
    pub(crate) max_timestamp: i64,
    pub(crate) offset_of_max_timestamp: i64,
    pub(crate) bytes_since_index: u64,
}

/// Checks the batches after the active segment's last offset index entry (all of them when the
/// index is empty): complete, CRC-valid, and each based at the previous one's last offset + 1 (the
/// first at the offset the index entry names, or at the segment's base). Returns `None` when
/// anything is wrong, so that the caller recovers the whole segment.
pub(crate) async fn scan_clean_tail<File: StorageFile>(
    file: &File,
    segment: &Segment<File>,
    log_size: u64,
) -> io::Result<Option<CleanTail>> {
    let base = segment.base;
    let last_entry = segment
        .index
        .as_ref()
        .and_then(|index| index.last())
        .copied();
    let start = last_entry.map_or(0, |entry| entry.position as u64);
    let mut last = last_entry.map_or(base - 1, |entry| base + entry.relative_offset as i64 - 1);
    let mut max_timestamp = segment.max_timestamp;
    let mut offset_of_max_timestamp = segment.offset_of_max_timestamp;
    let mut continuous = true;
    let end = scan(
        file,
        start,
        log_size,
        RECOVERY_READ_BYTES,
        true,
        |_, header, _| {
            if header.base_offset != last + 1 || header.last_offset() - base > u32::MAX as i64 {
                continuous = false;
                return false;
            }
            last = header.last_offset();
            if header.max_timestamp > max_timestamp {
                max_timestamp = header.max_timestamp;
                offset_of_max_timestamp = header.last_offset();
            }
            true
        },
    )
    .await?;
    Ok((continuous && end == log_size).then_some(CleanTail {
        last_offset: last,
        max_timestamp,
        offset_of_max_timestamp,
        bytes_since_index: end - start,
    }))
}

/// The max timestamp of the segment's first batch (`None` when it has no complete header).
pub(crate) async fn first_batch_max_timestamp<File: StorageFile>(
    file: &File,
) -> io::Result<Option<i64>> {
    let first = file.read_at(0, batch::HEADER_SIZE).await?;
    Ok((first.len() == batch::HEADER_SIZE).then(|| BatchHeader::parse(&first).max_timestamp))
}

/// Logs (WARN) what a recovery is about to cut from a segment: where, how many bytes, the last
/// offset kept, and the offsets the first cut batch claims when its header is readable.
async fn warn_truncation<File: StorageFile>(
    file: &File,
    path: &Path,
    recovered: &Recovered,
    log_size: u64,
) {
    let cut_header = match file.read_at(recovered.valid_end, batch::HEADER_SIZE).await {
        Ok(bytes) if bytes.len() == batch::HEADER_SIZE && bytes.iter().any(|byte| *byte != 0) => {
            let header = BatchHeader::parse(&bytes);
            format!(
                "{}..={} (as its header claims)",
                header.base_offset,
                header.last_offset()
            )
        }
        Ok(_) => "none readable (zero padding or a partial header)".to_string(),
        Err(error) => format!("unreadable: {error}"),
    };
    tracing::warn!(
        segment = %path.display(),
        position = recovered.valid_end,
        bytes_cut = log_size - recovered.valid_end,
        last_offset_kept = recovered.last_offset,
        first_cut_batch_offsets = %cut_header,
        "truncating a damaged segment tail: every offset after last_offset_kept is cut"
    );
}

/// Replaces the contents of `file` with `data`; returns an appender at its end.
pub(crate) async fn write_whole<File: StorageFile>(
    file: Rc<File>,
    data: &[u8],
) -> io::Result<Rc<Appender<File>>> {
    file.truncate(0).await?;
    let appender = Appender::open(file, 0).await?;
    appender.append(Bytes::copy_from_slice(data));
    appender.flush().await?;
    Ok(Rc::new(appender))
}

/// Flushes an appender, drops alignment padding and fsyncs.
pub(crate) async fn finalize<File: StorageFile>(appender: &Appender<File>) -> io::Result<()> {
    appender.flush().await?;
    if appender.file().write_alignment() > 1 {
        appender.file().truncate(appender.logical_size()).await?;
    }
    appender.file().sync_data().await
}

/// Finds, in one batch, the first record with a timestamp >= `timestamp`: `(offset, timestamp)`.
/// With LogAppendTime every record carries the batch's max timestamp.
pub(crate) fn find_record(
    batch: &Bytes,
    header: &BatchHeader,
    timestamp: i64,
) -> Result<Option<(i64, i64)>, StorageError> {
    if header.is_log_append_time() {
        return Ok((header.max_timestamp >= timestamp)
            .then_some((header.base_offset, header.max_timestamp)));
    }
    let mut bytes = batch.clone();
    let records =
        kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).map_err(|error| {
            StorageError::CorruptMessage(format!("cannot decode stored batch: {error}"))
        })?;
    Ok(records
        .records
        .iter()
        .find(|record| record.timestamp >= timestamp)
        .map(|record| (record.offset, record.timestamp)))
}
