//! A partition's log: a directory of segments, appends with group commit, reads, time lookups,
//! recovery, flush policy and producer state.
//!
//! # Directory layout
//! ```text
//! <dir>/00000000000000000000.log        record batches, exactly as stored by `append`
//! <dir>/00000000000000000000.index      offset index (see `index`)
//! <dir>/00000000000000000000.timeindex  time index (see `index`)
//! <dir>/00000000000000001234.log ...    next segment, base offset 1234
//! <dir>/00000000000000001234.snapshot   producer state before offset 1234 (see `producer_state`)
//! ```
//! The `.log` file of a segment is the concatenation of the record batches (see `batch`) whose
//! offsets lie in `[base, next segment's base)`; with O_DIRECT files it may end with zero padding
//! after a crash (a clean close truncates it to its logical size).
//!
//! # Appends
//! `append` validates and assigns offsets synchronously (so offsets follow call order), queues the
//! batches and then takes the writer lock: whoever holds it writes every queued batch in one
//! gather write (group commit), rolling segments as needed. `durable_end_offset` advances once the
//! write completed. A failed write is undone and refused (see `write_failure`); an I/O error the
//! log cannot undo marks it failed (offline for appends; reads of what is on disk go on).

use self::write_failure::{undone_error, OutcomeCell, WriteFailure, WriteOutcome};
use crate::appender::Appender;
use crate::batch::{self, BatchCheck, BatchHeader, LOG_OVERHEAD};
use crate::cache::BatchCache;
use crate::error::StorageError;
use crate::index::{self, OffsetEntry, TimeEntry, OFFSET_ENTRY_SIZE, TIME_ENTRY_SIZE};
use crate::io::{FileKind, FileSystem, StorageFile};
use crate::producer_state::{ProducerEntry, ProducerStateManager, SequenceCheck};
use crate::segment_files::{SegmentFilePool, DEFAULT_OPEN_SEGMENT_FILES};
use crate::types::{LeaderEpoch, Offset};
use bytes::{Bytes, BytesMut};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub segment_index_bytes: u64,
    pub index_interval_bytes: u32,
    /// Largest record batch accepted.
    pub max_message_bytes: u32,
    pub timestamp_type: TimestampType,
    /// fsync after this many messages (u64::MAX: never by count).
    pub flush_messages: u64,
    /// fsync when this long passed since the last one (u64::MAX: never).
    pub flush_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            segment_index_bytes: 10 << 20,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            flush_messages: u64::MAX,
            flush_ms: u64::MAX,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: Offset,
    pub last_offset: Offset,
    /// -1 unless the topic uses LogAppendTime.
    pub log_append_time_ms: i64,
    pub log_start_offset: Offset,
    /// An idempotent retry: the offsets are the original ones and nothing was written.
    pub duplicate: bool,
    pub record_count: u32,
}

/// Removes a partition directory and everything in it (DeleteTopics). The log must be closed.
pub fn delete_log_dir(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

fn file_name(base: i64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

fn parse_name(name: &str) -> Option<(i64, &str)> {
    let (num, ext) = name.split_once('.')?;
    if num.len() != 20 || !num.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((num.parse().ok()?, ext))
}

struct Segment<Fl> {
    base: i64,
    /// The active segment's `.log` file, held open; `None` for inactive segments, whose file is
    /// opened on demand through the log's [`SegmentFilePool`].
    file: Option<Rc<Fl>>,
    /// Readable bytes (writes completed).
    size: u64,
    /// Last offset in the segment; `base - 1` when empty.
    last_offset: i64,
    max_ts: i64,
    /// Last offset of the batch holding `max_ts` (-1: none).
    offset_of_max_ts: i64,
    /// Loaded lazily for inactive segments (the file is read whole and closed at once); always
    /// present for the active one.
    index: Option<Vec<OffsetEntry>>,
    time_index: Option<Vec<TimeEntry>>,
}

struct Active<Fl: StorageFile> {
    log: Rc<Appender<Fl>>,
    idx: Rc<Appender<Fl>>,
    tidx: Rc<Appender<Fl>>,
    bytes_since_index: u64,
    /// Time the segment's first batch was appended (its max timestamp after a reopen).
    first_append_ms: Option<i64>,
}

struct Pending {
    /// Per batch: its header (owned: offsets were assigned in it) and its body (a slice of the
    /// producer's request buffer: not copied).
    parts: Vec<(Bytes, Bytes)>,
    headers: Vec<BatchHeader>,
    last: i64,
    now_ms: i64,
    records: u64,
    /// Tells the append whether its batches were written or undone.
    outcome: OutcomeCell,
}

#[path = "log_write_failure.rs"]
mod write_failure;

struct Inner<Fl: StorageFile> {
    segments: BTreeMap<i64, Segment<Fl>>,
    active: Active<Fl>,
    next_offset: i64,
    durable_end: i64,
    log_start: i64,
    pending: VecDeque<Pending>,
    producers: ProducerStateManager,
    config: LogConfig,
    unsynced_messages: u64,
    last_sync_ms: Option<i64>,
    dirty: bool,
    failed: bool,
    /// A failed write is being undone: appends are refused until it is.
    undoing: bool,
    closed: bool,
}

impl<Fl: StorageFile> Inner<Fl> {
    fn active_seg(&mut self) -> &mut Segment<Fl> {
        self.segments.values_mut().next_back().unwrap()
    }
}

pub struct Log<F: FileSystem> {
    fs: F,
    dir: PathBuf,
    cache: Rc<BatchCache>,
    /// Open inactive-segment files (usually shared by the shard's logs).
    files: Rc<SegmentFilePool<F>>,
    id: u64,
    inner: RefCell<Inner<F::File>>,
    writer: async_lock::Mutex<()>,
}

/// Scans the batches of `file` in `[start, end)`, reading `chunk` bytes at a time, calling `f`
/// with each complete (and, with `check_crc`, CRC-valid) batch's position, header and bytes until
/// it returns false. Returns the position after the last batch accepted by `f` (where a scan
/// stops at a torn, corrupt or zero-padded tail).
async fn scan<Fl: StorageFile>(
    file: &Fl,
    start: u64,
    end: u64,
    chunk: usize,
    check_crc: bool,
    mut f: impl FnMut(u64, &BatchHeader, Bytes) -> bool,
) -> io::Result<u64> {
    let mut pos = start;
    let mut buf = Bytes::new();
    let mut buf_pos = start;
    while pos < end {
        let off = (pos - buf_pos) as usize;
        match batch::check_batch_at(&buf[off.min(buf.len())..], check_crc) {
            BatchCheck::Valid(h) => {
                let size = h.total_size();
                if !f(pos, &h, buf.slice(off..off + size)) {
                    return Ok(pos);
                }
                pos += size as u64;
            }
            BatchCheck::Incomplete => {
                let have = buf.len().saturating_sub(off);
                let mut need = chunk.max(LOG_OVERHEAD + 5);
                if have >= LOG_OVERHEAD {
                    let len = i32::from_be_bytes(buf[off + 8..off + 12].try_into().unwrap());
                    need = need.max(LOG_OVERHEAD + len.max(0) as usize);
                }
                let want = (need as u64).min(end - pos) as usize;
                if want <= have {
                    break; // torn tail
                }
                buf = file.read_at(pos, want).await?;
                buf_pos = pos;
                if buf.len() <= have {
                    break;
                }
            }
            BatchCheck::Invalid(_) => break,
        }
    }
    Ok(pos)
}

/// What a full scan of a segment found.
struct Recovered {
    valid_end: u64,
    last_offset: i64,
    max_ts: i64,
    offset_of_max_ts: i64,
    index: Vec<OffsetEntry>,
    time_index: Vec<TimeEntry>,
    bytes_since_index: u64,
    first_ts: Option<i64>,
}

/// Kafka's indexing rule, shared by appends and recovery: returns the entries to add for a batch
/// at `pos` (after updating the max timestamp).
#[allow(clippy::too_many_arguments)]
fn index_batch(
    base: i64,
    pos: u64,
    h: &BatchHeader,
    interval: u32,
    bytes_since: &mut u64,
    max_ts: &mut i64,
    offset_of_max_ts: &mut i64,
    last_time_entry: Option<i64>,
) -> (Option<OffsetEntry>, Option<TimeEntry>) {
    if h.max_timestamp > *max_ts {
        *max_ts = h.max_timestamp;
        *offset_of_max_ts = h.last_offset();
    }
    let mut out = (None, None);
    if *bytes_since > interval as u64 {
        out.0 = Some(OffsetEntry {
            relative_offset: (h.base_offset - base) as u32,
            position: pos as u32,
        });
        if last_time_entry.is_none_or(|t| *max_ts > t) {
            out.1 = Some(TimeEntry {
                timestamp: *max_ts,
                relative_offset: (*offset_of_max_ts - base) as u32,
            });
        }
        *bytes_since = 0;
    }
    *bytes_since += h.total_size() as u64;
    out
}

async fn recover_segment<Fl: StorageFile>(
    file: &Fl,
    base: i64,
    file_size: u64,
    interval: u32,
) -> io::Result<Recovered> {
    let mut r = Recovered {
        valid_end: 0,
        last_offset: base - 1,
        max_ts: -1,
        offset_of_max_ts: -1,
        index: Vec::new(),
        time_index: Vec::new(),
        bytes_since_index: 0,
        first_ts: None,
    };
    let mut expected = base;
    let end = scan(file, 0, file_size, 1 << 20, true, |pos, h, _| {
        // Offsets are contiguous within a segment (no compaction yet); the base offset is not
        // covered by the CRC, so this also catches damage there.
        if h.base_offset != expected || h.last_offset() - base > u32::MAX as i64 {
            return false;
        }
        expected = h.last_offset() + 1;
        r.last_offset = h.last_offset();
        r.first_ts.get_or_insert(h.max_timestamp);
        let last_t = r.time_index.last().map(|e| e.timestamp);
        let (oe, te) = index_batch(
            base,
            pos,
            h,
            interval,
            &mut r.bytes_since_index,
            &mut r.max_ts,
            &mut r.offset_of_max_ts,
            last_t,
        );
        r.index.extend(oe);
        r.time_index.extend(te);
        true
    })
    .await?;
    r.valid_end = end;
    Ok(r)
}

/// The tail of a cleanly closed active segment, as [`scan_clean_tail`] found it.
struct CleanTail {
    last_offset: i64,
    max_ts: i64,
    offset_of_max_ts: i64,
    bytes_since_index: u64,
}

/// Checks the batches after the active segment's last offset index entry (all of them when the
/// index is empty): complete, CRC-valid, and each based at the previous one's last offset + 1 (the
/// first at the offset the index entry names, or at the segment's base). Returns `None` when
/// anything is wrong, so that the caller recovers the whole segment.
async fn scan_clean_tail<Fl: StorageFile>(
    file: &Fl,
    seg: &Segment<Fl>,
    log_size: u64,
) -> io::Result<Option<CleanTail>> {
    let last_entry = seg.index.as_ref().and_then(|index| index.last()).copied();
    let start = last_entry.map_or(0, |entry| entry.position as u64);
    let mut last = last_entry.map_or(seg.base - 1, |entry| {
        seg.base + entry.relative_offset as i64 - 1
    });
    let (mut max_ts, mut offset_of_max_ts) = (seg.max_ts, seg.offset_of_max_ts);
    let mut continuous = true;
    let end = scan(file, start, log_size, 1 << 20, true, |_, h, _| {
        if h.base_offset != last + 1 || h.last_offset() - seg.base > u32::MAX as i64 {
            continuous = false;
            return false;
        }
        last = h.last_offset();
        if h.max_timestamp > max_ts {
            max_ts = h.max_timestamp;
            offset_of_max_ts = h.last_offset();
        }
        true
    })
    .await?;
    Ok((continuous && end == log_size).then_some(CleanTail {
        last_offset: last,
        max_ts,
        offset_of_max_ts,
        bytes_since_index: end - start,
    }))
}

/// Logs (WARN) what a recovery is about to cut from a segment: where, how many bytes, the last
/// offset kept, and the offsets the first cut batch claims when its header is readable.
async fn warn_truncation<Fl: StorageFile>(
    file: &Fl,
    path: &Path,
    recovered: &Recovered,
    log_size: u64,
) {
    let cut_header = match file.read_at(recovered.valid_end, batch::HEADER_SIZE).await {
        Ok(bytes) if bytes.len() == batch::HEADER_SIZE && bytes.iter().any(|b| *b != 0) => {
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

async fn write_whole<Fl: StorageFile>(file: Rc<Fl>, data: &[u8]) -> io::Result<Rc<Appender<Fl>>> {
    file.truncate(0).await?;
    let app = Appender::open(file, 0).await?;
    app.append(Bytes::copy_from_slice(data));
    app.flush().await?;
    Ok(Rc::new(app))
}

impl<F: FileSystem> Log<F> {
    fn path(&self, base: i64, ext: &str) -> PathBuf {
        self.dir.join(file_name(base, ext))
    }

    /// Opens or creates the log in `dir`. With `clean_shutdown == false` the active segment (and
    /// any segment whose indexes are missing or inconsistent) is scanned: every batch's length,
    /// magic and CRC are checked, the torn tail (or zero padding) is truncated and the indexes are
    /// rebuilt. After a clean shutdown only the active segment's tail (after its last index entry)
    /// is checked (CRCs and offset continuity); damage there sends it through the same recovery.
    /// Every truncation is logged at WARN (segment, position, bytes and offsets cut). Producer state
    /// comes from the newest usable snapshot plus a replay of the batches after it.
    ///
    /// The log gets a pool of its own for its inactive segments' files (see
    /// [`Log::open_with_file_pool`] to share one between logs).
    pub async fn open(
        fs: F,
        dir: PathBuf,
        config: LogConfig,
        cache: Rc<BatchCache>,
        clean_shutdown: bool,
    ) -> Result<Self, StorageError> {
        let files = Rc::new(SegmentFilePool::new(fs.clone(), DEFAULT_OPEN_SEGMENT_FILES));
        Self::open_with_file_pool(fs, dir, config, cache, files, clean_shutdown).await
    }

    /// As [`Log::open`], reading inactive segments through `files` (a shard's pool). Only the
    /// active segment's files stay open; an inactive segment's `.log` is opened only when it must
    /// be recovered, and closed again.
    pub async fn open_with_file_pool(
        fs: F,
        dir: PathBuf,
        config: LogConfig,
        cache: Rc<BatchCache>,
        files: Rc<SegmentFilePool<F>>,
        clean_shutdown: bool,
    ) -> Result<Self, StorageError> {
        std::fs::create_dir_all(&dir)?;
        let mut bases = Vec::new();
        let mut snapshots = Vec::new();
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let name = e.file_name();
            let Some((off, ext)) = name.to_str().and_then(parse_name) else {
                continue;
            };
            match ext {
                "log" => bases.push(off),
                "snapshot" => snapshots.push(off),
                _ => {}
            }
        }
        bases.sort();
        snapshots.sort();
        if bases.is_empty() {
            bases.push(0);
        }
        let interval = config.index_interval_bytes;
        let mut segments = BTreeMap::new();
        let n = bases.len();
        let mut active = None;
        for (i, &base) in bases.iter().enumerate() {
            let is_active = i + 1 == n;
            let lp = dir.join(file_name(base, "log"));
            // Inactive segments' data files are opened only to be recovered (and then closed).
            let active_file = if is_active {
                Some(Rc::new(fs.open(&lp, FileKind::SegmentData, true).await?))
            } else {
                None
            };
            let ip = dir.join(file_name(base, "index"));
            let tp = dir.join(file_name(base, "timeindex"));
            let files_exist = ip.exists() && tp.exists();
            let idx_file = Rc::new(fs.open(&ip, FileKind::Small, true).await?);
            let tidx_file = Rc::new(fs.open(&tp, FileKind::Small, true).await?);
            let log_size = match &active_file {
                Some(file) => file.size().await?,
                None => std::fs::metadata(&lp)?.len(),
            };
            let idx_size = idx_file.size().await?;
            let tidx_size = tidx_file.size().await?;
            let mut seg = Segment {
                base,
                file: active_file.clone(),
                size: log_size,
                last_offset: bases.get(i + 1).map_or(base - 1, |b| b - 1),
                max_ts: -1,
                offset_of_max_ts: -1,
                index: None,
                time_index: None,
            };
            // Cheap consistency check of the index files (whole files for the active segment).
            // A missing index, or an inactive non-empty segment without its final time index
            // entry, means the segment must be rescanned.
            let mut consistent = (files_exist || log_size == 0)
                && idx_size % OFFSET_ENTRY_SIZE as u64 == 0
                && tidx_size % TIME_ENTRY_SIZE as u64 == 0
                && (is_active || log_size == 0 || tidx_size > 0);
            let mut rec = None;
            if consistent {
                let ib = if is_active {
                    idx_file.read_at(0, idx_size as usize).await?
                } else {
                    let from = idx_size.saturating_sub(OFFSET_ENTRY_SIZE as u64);
                    idx_file.read_at(from, (idx_size - from) as usize).await?
                };
                let tb = if is_active {
                    tidx_file.read_at(0, tidx_size as usize).await?
                } else {
                    let from = tidx_size.saturating_sub(TIME_ENTRY_SIZE as u64);
                    tidx_file.read_at(from, (tidx_size - from) as usize).await?
                };
                match (
                    index::decode_offset_index(&ib, log_size),
                    index::decode_time_index(&tb),
                ) {
                    (Some(oi), Some(ti)) => {
                        if let Some(t) = ti.last() {
                            seg.max_ts = t.timestamp;
                            seg.offset_of_max_ts = base + t.relative_offset as i64;
                        }
                        if is_active {
                            seg.index = Some(oi);
                            seg.time_index = Some(ti);
                        }
                    }
                    _ => consistent = false,
                }
            }
            // After a clean stop the active segment's tail (from its last index entry) is still
            // checked: CRCs, and offset continuity (the base offset is not covered by the CRC). Any
            // damage there sends the segment through the full recovery below.
            let clean_tail =
                if let (true, Some(file)) = (consistent && clean_shutdown, &active_file) {
                    let tail = scan_clean_tail(&**file, &seg, log_size).await?;
                    if tail.is_none() {
                        tracing::warn!(
                            segment = %lp.display(),
                            "damaged tail after a clean shutdown; recovering the segment"
                        );
                    }
                    tail
                } else {
                    None
                };
            if !consistent || (is_active && clean_tail.is_none()) {
                let file = match &active_file {
                    Some(file) => file.clone(),
                    None => Rc::new(fs.open(&lp, FileKind::SegmentData, false).await?),
                };
                let r = recover_segment(&*file, base, log_size, interval).await?;
                if r.valid_end < log_size {
                    warn_truncation(&*file, &lp, &r, log_size).await;
                    file.truncate(r.valid_end).await?;
                    file.sync_data().await?;
                }
                seg.size = r.valid_end;
                seg.max_ts = r.max_ts;
                seg.offset_of_max_ts = r.offset_of_max_ts;
                let ib: Vec<u8> = r.index.iter().flat_map(|e| e.encode()).collect();
                let tb: Vec<u8> = r.time_index.iter().flat_map(|e| e.encode()).collect();
                let ia = write_whole(idx_file.clone(), &ib).await?;
                let ta = write_whole(tidx_file.clone(), &tb).await?;
                if is_active {
                    seg.last_offset = r.last_offset;
                    seg.index = Some(r.index.clone());
                    seg.time_index = Some(r.time_index.clone());
                    rec = Some((r, ia, ta));
                }
            }
            if let Some(file) = active_file {
                let (bytes_since, first_ts, ia, ta) = match (rec, clean_tail) {
                    (Some((r, ia, ta)), _) => (r.bytes_since_index, r.first_ts, ia, ta),
                    (None, Some(tail)) => {
                        seg.size = log_size;
                        seg.last_offset = tail.last_offset;
                        seg.max_ts = tail.max_ts;
                        seg.offset_of_max_ts = tail.offset_of_max_ts;
                        let first = file.read_at(0, batch::HEADER_SIZE).await?;
                        let first_ts = (first.len() == batch::HEADER_SIZE)
                            .then(|| BatchHeader::parse(&first).max_timestamp);
                        let ia = Rc::new(Appender::open(idx_file.clone(), idx_size).await?);
                        let ta = Rc::new(Appender::open(tidx_file.clone(), tidx_size).await?);
                        (tail.bytes_since_index, first_ts, ia, ta)
                    }
                    (None, None) => {
                        unreachable!("an active segment is recovered or has a clean tail")
                    }
                };
                let la = Rc::new(Appender::open(file.clone(), seg.size).await?);
                active = Some(Active {
                    log: la,
                    idx: ia,
                    tidx: ta,
                    bytes_since_index: bytes_since,
                    first_append_ms: first_ts,
                });
            }
            segments.insert(base, seg);
        }
        let (&last_base, last_seg) = segments.iter().next_back().unwrap();
        let next_offset = (last_seg.last_offset + 1).max(last_base);
        let log_start = bases[0];
        let id = cache.register();
        let log = Log {
            fs,
            dir,
            cache,
            files,
            id,
            inner: RefCell::new(Inner {
                segments,
                active: active.unwrap(),
                next_offset,
                durable_end: next_offset,
                log_start,
                pending: VecDeque::new(),
                producers: ProducerStateManager::new(),
                config,
                unsynced_messages: 0,
                last_sync_ms: None,
                dirty: false,
                failed: false,
                undoing: false,
                closed: false,
            }),
            writer: async_lock::Mutex::new(()),
        };
        log.load_producer_state(snapshots).await?;
        Ok(log)
    }

    async fn load_producer_state(&self, snapshots: Vec<i64>) -> Result<(), StorageError> {
        let (start, end) = {
            let i = self.inner.borrow();
            (i.log_start, i.next_offset)
        };
        let mut from = start;
        let mut state = ProducerStateManager::new();
        for &s in snapshots.iter().rev() {
            if s > end {
                let _ = std::fs::remove_file(self.path(s, "snapshot"));
                continue;
            }
            if s < start {
                continue;
            }
            let Ok(b) = std::fs::read(self.path(s, "snapshot")) else {
                continue;
            };
            if let Some(st) = ProducerStateManager::decode_snapshot(&b) {
                state = st;
                from = s;
                break;
            }
        }
        // Replay the batches in [from, end).
        let mut cur = from;
        while cur < end {
            let Some((base, file, pos, size)) = self.locate(cur).await? else {
                break;
            };
            let mut last = cur - 1;
            scan(&*file, pos, size, 1 << 20, false, |_, h, _| {
                if h.last_offset() >= cur {
                    state.update(h);
                }
                last = h.last_offset();
                true
            })
            .await?;
            match self.next_segment_base(base) {
                Some(nb) => cur = nb.max(last + 1),
                None => break,
            }
        }
        self.inner.borrow_mut().producers = state;
        Ok(())
    }

    /// The segment holding `offset` and the position to scan from: `(base, file, pos, size)`.
    async fn locate(&self, offset: i64) -> io::Result<Option<(i64, Rc<F::File>, u64, u64)>> {
        let (base, file, size, loaded) = {
            let i = self.inner.borrow();
            let Some((&base, seg)) = i.segments.range(..=offset).next_back() else {
                return Ok(None);
            };
            (base, seg.file.clone(), seg.size, seg.index.is_some())
        };
        let file = match file {
            Some(file) => file,
            None => self.files.get(&self.path(base, "log")).await?,
        };
        if !loaded {
            let p = self.path(base, "index");
            let entries = match self.fs.open(&p, FileKind::Small, false).await {
                Ok(f) => {
                    let n = f.size().await?;
                    let b = f.read_at(0, n as usize).await?;
                    index::decode_offset_index(&b, size).unwrap_or_default()
                }
                Err(_) => Vec::new(),
            };
            if let Some(seg) = self.inner.borrow_mut().segments.get_mut(&base) {
                seg.index.get_or_insert(entries);
            }
        }
        let i = self.inner.borrow();
        let Some(seg) = i.segments.get(&base) else {
            return Ok(None);
        };
        let rel = (offset - base).clamp(0, u32::MAX as i64) as u32;
        let pos = index::lookup_offset(seg.index.as_deref().unwrap_or(&[]), rel) as u64;
        Ok(Some((base, file, pos, seg.size)))
    }

    pub fn id(&self) -> u64 {
        self.id
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn log_start_offset(&self) -> Offset {
        Offset(self.inner.borrow().log_start)
    }
    /// The next offset to be assigned.
    pub fn log_end_offset(&self) -> Offset {
        Offset(self.inner.borrow().next_offset)
    }
    /// Every offset below this has been written to the segment files.
    pub fn durable_end_offset(&self) -> Offset {
        Offset(self.inner.borrow().durable_end)
    }
    pub fn config(&self) -> LogConfig {
        self.inner.borrow().config.clone()
    }
    pub fn set_config(&self, config: LogConfig) {
        self.inner.borrow_mut().config = config;
    }
    pub fn segment_count(&self) -> usize {
        self.inner.borrow().segments.len()
    }
    /// Base offsets of the segments, oldest first.
    pub fn segment_bases(&self) -> Vec<Offset> {
        self.inner
            .borrow()
            .segments
            .keys()
            .map(|b| Offset(*b))
            .collect()
    }
    /// The producer state of one producer id (for transactions and diagnostics).
    pub fn producer_entry(&self, producer_id: i64) -> Option<ProducerEntry> {
        self.inner.borrow().producers.get(producer_id).cloned()
    }
    /// Runs `f` over the whole producer state (do not await inside).
    pub fn with_producer_state<R>(&self, f: impl FnOnce(&ProducerStateManager) -> R) -> R {
        f(&self.inner.borrow().producers)
    }
    pub fn is_failed(&self) -> bool {
        self.inner.borrow().failed
    }

    /// Base offset of the segment after the one based at `base`, if any.
    fn next_segment_base(&self, base: i64) -> Option<i64> {
        self.inner
            .borrow()
            .segments
            .range(base + 1..)
            .next()
            .map(|(b, _)| *b)
    }

    /// Reads only need the log open: a failed log still serves what is on disk (up to the durable
    /// end, which a failed write never moves).
    fn check_open(i: &Inner<F::File>) -> Result<(), StorageError> {
        if i.closed {
            return Err(StorageError::Closed);
        }
        Ok(())
    }

    fn check_usable(i: &Inner<F::File>) -> Result<(), StorageError> {
        if i.failed {
            return Err(StorageError::failed());
        }
        if i.closed {
            return Err(StorageError::Closed);
        }
        Ok(())
    }

    /// Validates, checks idempotence, assigns offsets and writes `records` (see the module doc).
    /// Returns once the bytes are written (not necessarily fsynced).
    pub async fn append(
        &self,
        records: Bytes,
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        let outcome: OutcomeCell = Rc::new(std::cell::Cell::new(WriteOutcome::Queued));
        let info = {
            let mut i = self.inner.borrow_mut();
            Self::check_usable(&i)?;
            if i.undoing {
                return Err(StorageError::Io(undone_error()));
            }
            let headers = batch::validate_batches(&records, i.config.max_message_bytes)?;
            // Idempotence checks. A multi-batch request is checked against a staged copy so that
            // a failure leaves the state untouched.
            let mut staged = None;
            if headers.len() == 1 {
                if let SequenceCheck::Duplicate {
                    first_offset,
                    last_offset,
                } = i.producers.check(&headers[0])?
                {
                    return Ok(AppendInfo {
                        base_offset: Offset(first_offset),
                        last_offset: Offset(last_offset),
                        log_append_time_ms: -1,
                        log_start_offset: Offset(i.log_start),
                        duplicate: true,
                        record_count: headers[0].records_count as u32,
                    });
                }
            } else if headers.iter().any(|h| h.has_producer_id()) {
                let mut st = i.producers.clone();
                let mut off = i.next_offset;
                for h in &headers {
                    if let SequenceCheck::Duplicate { .. } = st.check(h)? {
                        return Err(StorageError::OutOfOrderSequence(
                            "duplicate batch inside a multi-batch produce request".into(),
                        ));
                    }
                    let mut h2 = *h;
                    h2.base_offset = off;
                    off += h.last_offset_delta as i64 + 1;
                    st.update(&h2);
                }
                staged = Some(st);
            }
            let log_append = i.config.timestamp_type == TimestampType::LogAppendTime;
            let base = i.next_offset;
            let mut off = base;
            let mut pos = 0usize;
            let mut out_headers = Vec::with_capacity(headers.len());
            let mut parts = Vec::with_capacity(headers.len());
            let mut records_total = 0u64;
            for h in &headers {
                let size = h.total_size();
                // Only the header changes (base offset, leader epoch, maybe the append time and CRC):
                // it is copied; the records stay in the request buffer.
                let mut header = BytesMut::from(&records[pos..pos + batch::HEADER_SIZE]);
                let body = records.slice(pos + batch::HEADER_SIZE..pos + size);
                batch::set_base_offset(&mut header, off);
                batch::set_leader_epoch(&mut header, leader_epoch.0);
                if log_append {
                    batch::set_log_append_time(&mut header, &body, now_ms);
                } else if BatchHeader::parse(&header).max_timestamp != h.max_timestamp {
                    batch::set_max_timestamp(&mut header, &body, h.max_timestamp);
                }
                let nh = BatchHeader::parse(&header);
                debug_assert_eq!(nh.total_size(), size);
                if staged.is_none() {
                    i.producers.update(&nh);
                }
                records_total += nh.records_count as u64;
                out_headers.push(nh);
                parts.push((header.freeze(), body));
                off = nh.last_offset() + 1;
                pos += size;
            }
            if let Some(st) = staged {
                i.producers = st;
            }
            let last = off - 1;
            i.next_offset = off;
            i.pending.push_back(Pending {
                parts,
                headers: out_headers,
                last,
                now_ms,
                records: records_total,
                outcome: outcome.clone(),
            });
            AppendInfo {
                base_offset: Offset(base),
                last_offset: Offset(last),
                log_append_time_ms: if log_append { now_ms } else { -1 },
                log_start_offset: Offset(i.log_start),
                duplicate: false,
                record_count: records_total as u32,
            }
        };
        let _g = self.writer.lock().await;
        match outcome.get() {
            WriteOutcome::Written => return Ok(info), // an earlier writer's group commit
            WriteOutcome::Undone => return Err(StorageError::Io(undone_error())),
            WriteOutcome::Queued => {}
        }
        if self.inner.borrow().failed {
            return Err(StorageError::failed());
        }
        self.write_pending()
            .await
            .map_err(|failure| self.write_failed(failure))?;
        match outcome.get() {
            WriteOutcome::Written => Ok(info),
            _ => Err(StorageError::Io(undone_error())),
        }
    }

    /// The error for a failed `write_pending`; marks the log failed unless the write was undone.
    fn write_failed(&self, failure: WriteFailure) -> StorageError {
        match failure {
            WriteFailure::Undone(error) => error.into(),
            WriteFailure::Offline(error) => {
                tracing::error!(dir = %self.dir.display(), %error, "log write failed; log is offline");
                self.inner.borrow_mut().failed = true;
                error.into()
            }
        }
    }

    /// Writes every queued batch. Caller holds the writer lock. A failed write is undone when it
    /// can be (see `write_failure`).
    async fn write_pending(&self) -> Result<(), WriteFailure> {
        loop {
            let items: Vec<Pending> = self.inner.borrow_mut().pending.drain(..).collect();
            if items.is_empty() {
                return Ok(());
            }
            let mut checkpoint = self.checkpoint();
            // A roll after some of these batches were appended finalizes them in the old segment:
            // a later failure can then not be undone.
            let (mut appended, mut rolled) = (false, false);
            for it in &items {
                for (h, (header, body)) in it.headers.iter().zip(&it.parts) {
                    if self.needs_roll(h, it.now_ms) {
                        rolled |= appended;
                        self.roll(h.base_offset)
                            .await
                            .map_err(WriteFailure::Offline)?;
                        if !appended {
                            checkpoint = self.checkpoint();
                        }
                    }
                    appended = true;
                    let mut i = self.inner.borrow_mut();
                    let interval = i.config.index_interval_bytes;
                    let pos = i.active.log.logical_size();
                    let mut bytes_since = i.active.bytes_since_index;
                    i.active.first_append_ms.get_or_insert(it.now_ms);
                    let seg = i.active_seg();
                    let last_t = seg
                        .time_index
                        .as_ref()
                        .and_then(|t| t.last())
                        .map(|e| e.timestamp);
                    let (mut mts, mut omts) = (seg.max_ts, seg.offset_of_max_ts);
                    let (oe, te) = index_batch(
                        seg.base,
                        pos,
                        h,
                        interval,
                        &mut bytes_since,
                        &mut mts,
                        &mut omts,
                        last_t,
                    );
                    seg.max_ts = mts;
                    seg.offset_of_max_ts = omts;
                    seg.last_offset = h.last_offset();
                    if let Some(e) = oe {
                        let v = seg.index.get_or_insert_with(Vec::new);
                        assert!(v
                            .last()
                            .is_none_or(|l| l.relative_offset < e.relative_offset
                                && l.position < e.position));
                        v.push(e);
                    }
                    if let Some(e) = te {
                        let v = seg.time_index.get_or_insert_with(Vec::new);
                        assert!(v
                            .last()
                            .is_none_or(|l| l.timestamp < e.timestamp
                                && l.relative_offset <= e.relative_offset));
                        v.push(e);
                    }
                    i.active.bytes_since_index = bytes_since;
                    if let Some(e) = oe {
                        i.active.idx.append(Bytes::copy_from_slice(&e.encode()));
                    }
                    if let Some(e) = te {
                        i.active.tidx.append(Bytes::copy_from_slice(&e.encode()));
                    }
                    i.active.log.append(header.clone());
                    i.active.log.append(body.clone());
                }
            }
            let app = self.inner.borrow().active.log.clone();
            if let Err(error) = app.flush().await {
                return Err(if rolled {
                    WriteFailure::Offline(error)
                } else {
                    self.undo_write(checkpoint, items, error).await
                });
            }
            let mut sync = false;
            {
                let mut i = self.inner.borrow_mut();
                let written = app.written_size();
                i.active_seg().size = written;
                let last = items.last().unwrap().last;
                i.durable_end = i.durable_end.max(last + 1);
                i.unsynced_messages += items.iter().map(|p| p.records).sum::<u64>();
                i.dirty = true;
                if i.unsynced_messages >= i.config.flush_messages {
                    sync = true;
                }
            }
            for it in items {
                it.outcome.set(WriteOutcome::Written);
                for (header, body) in it.parts {
                    self.cache.insert(self.id, header, body);
                }
            }
            if sync {
                self.sync_active().await.map_err(WriteFailure::Offline)?;
            }
        }
    }

    async fn sync_active(&self) -> io::Result<()> {
        let file = self.inner.borrow().active.log.file().clone();
        file.sync_data().await?;
        let mut i = self.inner.borrow_mut();
        i.unsynced_messages = 0;
        i.dirty = false;
        Ok(())
    }
}

/// Finds, in one batch, the first record with a timestamp >= `ts`: `(offset, timestamp)`.
/// With LogAppendTime every record carries the batch's max timestamp.
fn find_record(
    batch: &Bytes,
    h: &BatchHeader,
    ts: i64,
) -> Result<Option<(i64, i64)>, StorageError> {
    if h.is_log_append_time() {
        return Ok((h.max_timestamp >= ts).then_some((h.base_offset, h.max_timestamp)));
    }
    let mut b = batch.clone();
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut b)
        .map_err(|e| StorageError::CorruptMessage(format!("cannot decode stored batch: {e}")))?;
    Ok(set
        .records
        .iter()
        .find(|r| r.timestamp >= ts)
        .map(|r| (r.offset, r.timestamp)))
}

/// Flushes an appender, drops alignment padding and fsyncs.
async fn finalize<Fl: StorageFile>(app: &Appender<Fl>) -> io::Result<()> {
    app.flush().await?;
    if app.file().write_alignment() > 1 {
        app.file().truncate(app.logical_size()).await?;
    }
    app.file().sync_data().await
}

impl<F: FileSystem> Log<F> {
    fn needs_roll(&self, h: &BatchHeader, now_ms: i64) -> bool {
        let mut i = self.inner.borrow_mut();
        let cfg = i.config.clone();
        let size = i.active.log.logical_size();
        let first = i.active.first_append_ms;
        let seg = i.active_seg();
        if seg.last_offset < seg.base {
            return false; // empty: never roll
        }
        let idx_n = seg.index.as_ref().map_or(0, |v| v.len()) as u64;
        let tidx_n = seg.time_index.as_ref().map_or(0, |v| v.len()) as u64;
        size + h.total_size() as u64 > cfg.segment_bytes
            || first.is_some_and(|f| now_ms - f >= cfg.segment_ms)
            || (idx_n + 1) * OFFSET_ENTRY_SIZE as u64 > cfg.segment_index_bytes
            || (tidx_n + 1) * TIME_ENTRY_SIZE as u64 > cfg.segment_index_bytes
            || h.last_offset() - seg.base > u32::MAX as i64
    }

    /// Makes the active segment inactive-ready: final time index entry, everything written,
    /// padding truncated, fsynced.
    async fn finish_active(&self) -> io::Result<()> {
        let (la, ia, ta) = {
            let mut i = self.inner.borrow_mut();
            let (la, ia, ta) = (
                i.active.log.clone(),
                i.active.idx.clone(),
                i.active.tidx.clone(),
            );
            let seg = i.active_seg();
            let entry = if seg.offset_of_max_ts >= 0
                && seg
                    .time_index
                    .as_ref()
                    .and_then(|t| t.last())
                    .is_none_or(|e| e.timestamp < seg.max_ts)
            {
                let e = TimeEntry {
                    timestamp: seg.max_ts,
                    relative_offset: (seg.offset_of_max_ts - seg.base) as u32,
                };
                seg.time_index.get_or_insert_with(Vec::new).push(e);
                Some(e)
            } else {
                None
            };
            if let Some(e) = entry {
                ta.append(Bytes::copy_from_slice(&e.encode()));
            }
            (la, ia, ta)
        };
        finalize(&la).await?;
        finalize(&ia).await?;
        finalize(&ta).await?;
        let mut i = self.inner.borrow_mut();
        let seg = i.active_seg();
        seg.size = la.logical_size();
        let end = seg.last_offset + 1;
        i.durable_end = i.durable_end.max(end);
        i.unsynced_messages = 0;
        i.dirty = false;
        Ok(())
    }

    async fn roll(&self, new_base: i64) -> io::Result<()> {
        self.finish_active().await?;
        let (snap_off, data, seg_bytes) = {
            let i = self.inner.borrow();
            (
                i.next_offset,
                i.producers.encode_snapshot(),
                i.config.segment_bytes,
            )
        };
        self.write_snapshot(snap_off, &data).await?;
        let file = Rc::new(
            self.fs
                .open(&self.path(new_base, "log"), FileKind::SegmentData, true)
                .await?,
        );
        let idx = Rc::new(
            self.fs
                .open(&self.path(new_base, "index"), FileKind::Small, true)
                .await?,
        );
        let tidx = Rc::new(
            self.fs
                .open(&self.path(new_base, "timeindex"), FileKind::Small, true)
                .await?,
        );
        for f in [&file, &idx, &tidx] {
            if f.size().await? > 0 {
                f.truncate(0).await?;
            }
        }
        let _ = file.preallocate(seg_bytes.min(1 << 30)).await;
        let active = Active {
            log: Rc::new(Appender::open(file.clone(), 0).await?),
            idx: Rc::new(Appender::open(idx, 0).await?),
            tidx: Rc::new(Appender::open(tidx, 0).await?),
            bytes_since_index: 0,
            first_append_ms: None,
        };
        let mut i = self.inner.borrow_mut();
        // The finished segment is inactive now: its file is read through the pool from here on (the
        // descriptor closes once the old appender and reads in progress let go of it).
        i.active_seg().file = None;
        i.segments.insert(
            new_base,
            Segment {
                base: new_base,
                file: Some(file),
                size: 0,
                last_offset: new_base - 1,
                max_ts: -1,
                offset_of_max_ts: -1,
                index: Some(Vec::new()),
                time_index: Some(Vec::new()),
            },
        );
        i.active = active;
        tracing::debug!(dir = %self.dir.display(), new_base, "rolled segment");
        Ok(())
    }

    /// Writes `<offset>.snapshot` and keeps only the two newest snapshots.
    async fn write_snapshot(&self, offset: i64, data: &[u8]) -> io::Result<()> {
        let p = self.path(offset, "snapshot");
        let f = Rc::new(self.fs.open(&p, FileKind::Small, true).await?);
        let app = write_whole(f.clone(), data).await?;
        drop(app);
        f.sync_data().await?;
        let mut snaps: Vec<i64> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let n = e.file_name();
                let (off, ext) = parse_name(n.to_str()?)?;
                (ext == "snapshot").then_some(off)
            })
            .collect();
        snaps.sort();
        let keep = snaps.len().saturating_sub(2);
        for s in &snaps[..keep] {
            let _ = std::fs::remove_file(self.path(*s, "snapshot"));
        }
        Ok(())
    }

    /// As [`Log::read_batches`], the batches concatenated into one buffer (a copy when there are
    /// several).
    pub async fn read(
        &self,
        from: Offset,
        max_bytes: usize,
        upper: Offset,
        min_one_batch: bool,
    ) -> Result<Bytes, StorageError> {
        let mut batches = self
            .read_batches(from, max_bytes, upper, min_one_batch)
            .await?;
        Ok(match batches.len() {
            0 => Bytes::new(),
            1 => batches.pop().expect("one batch"),
            _ => {
                let mut joined = BytesMut::with_capacity(batches.iter().map(Bytes::len).sum());
                for batch in batches {
                    joined.extend_from_slice(&batch);
                }
                joined.freeze()
            }
        })
    }

    /// Whole batches starting with the one containing `from`, up to `max_bytes` (at least one
    /// batch when `min_one_batch`, KIP-74), none at or beyond `upper`, in the buffers they live in
    /// (no copy): the batch cache's (a batch is two buffers there, its header and its body) or slices
    /// of what was read from the segment file (one per batch). The buffers concatenated are the
    /// batches; a caller that needs batch boundaries parses the headers.
    /// Served from the batch cache when possible, else from the segment files via the offset index.
    pub async fn read_batches(
        &self,
        from: Offset,
        max_bytes: usize,
        upper: Offset,
        min_one_batch: bool,
    ) -> Result<Vec<Bytes>, StorageError> {
        let (start, end) = {
            let i = self.inner.borrow();
            Self::check_open(&i)?;
            (i.log_start, i.next_offset)
        };
        if from.0 < start || from.0 > end {
            return Err(StorageError::OffsetOutOfRange {
                requested: from,
                start: Offset(start),
                end: Offset(end),
            });
        }
        if from.0 >= upper.0 {
            return Ok(Vec::new());
        }
        if let Some(batches) = self
            .cache
            .read(self.id, from.0, max_bytes, upper.0, min_one_batch)
        {
            return Ok(batches);
        }
        Ok(self
            .read_disk(from.0, max_bytes, upper.0, min_one_batch)
            .await?)
    }

    async fn read_disk(
        &self,
        from: i64,
        max_bytes: usize,
        upper: i64,
        min_one_batch: bool,
    ) -> io::Result<Vec<Bytes>> {
        let mut parts: Vec<Bytes> = Vec::new();
        let mut total = 0usize;
        let mut cur = from;
        let mut done = false;
        while !done {
            let Some((base, file, pos, size)) = self.locate(cur).await? else {
                break;
            };
            let chunk = max_bytes.saturating_sub(total).clamp(16 << 10, 4 << 20) + (16 << 10);
            scan(&*file, pos, size, chunk, false, |_, h, b| {
                if h.last_offset() < cur {
                    return true;
                }
                if h.last_offset() >= upper {
                    done = true;
                    return false;
                }
                if total + b.len() > max_bytes {
                    if parts.is_empty() && min_one_batch {
                        total += b.len();
                        parts.push(b);
                    }
                    done = true;
                    return false;
                }
                total += b.len();
                parts.push(b);
                true
            })
            .await?;
            if done {
                break;
            }
            match self.next_segment_base(base) {
                Some(nb) => cur = nb.max(cur),
                None => break,
            }
        }
        Ok(parts)
    }

    /// ListOffsets by timestamp: the first record whose timestamp is >= `ts_ms`, as
    /// `(offset, timestamp)`; `None` if there is none. Uses the segments' max timestamps, then the
    /// time index, then scans and decodes the candidate batch.
    pub async fn offset_for_timestamp(
        &self,
        ts_ms: i64,
    ) -> Result<Option<(Offset, i64)>, StorageError> {
        let cands: Vec<(i64, i64)> = {
            let i = self.inner.borrow();
            Self::check_open(&i)?;
            i.segments
                .values()
                .filter(|s| s.offset_of_max_ts >= 0 && s.max_ts >= ts_ms)
                .map(|s| (s.base, s.max_ts))
                .collect()
        };
        for (base, _) in cands {
            let rel = self.time_lookup(base, ts_ms).await?;
            let Some((_, file, pos, size)) = self.locate(base + rel as i64).await? else {
                continue;
            };
            let mut found = None;
            scan(&*file, pos, size, 64 << 10, false, |_, h, b| {
                if h.max_timestamp >= ts_ms {
                    found = Some((*h, b));
                    return false;
                }
                true
            })
            .await?;
            if let Some((h, b)) = found {
                if let Some((o, t)) = find_record(&b, &h, ts_ms)? {
                    return Ok(Some((Offset(o), t)));
                }
            }
        }
        Ok(None)
    }

    async fn time_lookup(&self, base: i64, ts: i64) -> io::Result<u32> {
        let loaded = self
            .inner
            .borrow()
            .segments
            .get(&base)
            .is_some_and(|s| s.time_index.is_some());
        if !loaded {
            let p = self.path(base, "timeindex");
            let entries = match self.fs.open(&p, FileKind::Small, false).await {
                Ok(f) => {
                    let n = f.size().await?;
                    let b = f.read_at(0, n as usize).await?;
                    index::decode_time_index(&b).unwrap_or_default()
                }
                Err(_) => Vec::new(),
            };
            if let Some(seg) = self.inner.borrow_mut().segments.get_mut(&base) {
                seg.time_index.get_or_insert(entries);
            }
        }
        let i = self.inner.borrow();
        Ok(i.segments
            .get(&base)
            .and_then(|s| s.time_index.as_deref())
            .map_or(0, |t| index::lookup_time(t, ts)))
    }

    /// ListOffsets MAX_TIMESTAMP: `(offset, timestamp)` of the first record carrying the largest
    /// timestamp in the log (exact record offset; with LogAppendTime the batch's first offset).
    pub async fn max_timestamp(&self) -> Result<Option<(Offset, i64)>, StorageError> {
        let best = {
            let i = self.inner.borrow();
            Self::check_open(&i)?;
            let mut best: Option<(i64, i64)> = None;
            for s in i.segments.values() {
                if s.offset_of_max_ts >= 0 && best.is_none_or(|(t, _)| s.max_ts > t) {
                    best = Some((s.max_ts, s.offset_of_max_ts));
                }
            }
            best
        };
        let Some((ts, off)) = best else {
            return Ok(None);
        };
        // max_bytes 1 with min_one_batch: exactly the batch holding `off`.
        let Some(b) = self.read_disk(off, 1, i64::MAX, true).await?.pop() else {
            return Ok(None);
        };
        if b.len() < batch::HEADER_SIZE {
            return Ok(None);
        }
        let h = BatchHeader::parse(&b);
        Ok(find_record(&b, &h, ts)?.map(|(o, t)| (Offset(o), t)))
    }

    /// fsyncs the active segment when `flush_ms` passed since the last fsync and something was
    /// written since (the broker calls this from a timer).
    pub async fn flush_if_due(&self, now_ms: i64) -> Result<(), StorageError> {
        let due = {
            let mut i = self.inner.borrow_mut();
            Self::check_usable(&i)?;
            match i.last_sync_ms {
                None => {
                    i.last_sync_ms = Some(now_ms);
                    false
                }
                Some(t) => {
                    let flush_ms = i.config.flush_ms.min(i64::MAX as u64) as i64;
                    i.dirty && i.config.flush_ms != u64::MAX && now_ms - t >= flush_ms
                }
            }
        };
        if due {
            self.flush().await?;
            self.inner.borrow_mut().last_sync_ms = Some(now_ms);
        }
        Ok(())
    }

    /// Writes everything queued and fsyncs the active segment now.
    pub async fn flush(&self) -> Result<(), StorageError> {
        let _g = self.writer.lock().await;
        Self::check_usable(&self.inner.borrow())?;
        let result = match self.write_pending().await {
            Ok(()) => self.sync_active().await.map_err(WriteFailure::Offline),
            Err(failure) => Err(failure),
        };
        result.map_err(|failure| self.write_failed(failure))
    }

    /// Writes everything, truncates padding, fsyncs, writes a producer-state snapshot and drops
    /// the log's cache entries. The log must not be used afterwards (calls return `Closed`).
    pub async fn close(&self) -> Result<(), StorageError> {
        let _g = self.writer.lock().await;
        {
            let i = self.inner.borrow();
            if i.closed {
                return Ok(());
            }
            if i.failed {
                return Err(StorageError::failed());
            }
        }
        let r = async {
            self.write_pending()
                .await
                .map_err(|failure| match failure {
                    WriteFailure::Undone(error) | WriteFailure::Offline(error) => error,
                })?;
            self.finish_active().await?;
            let (off, data) = {
                let i = self.inner.borrow();
                (i.next_offset, i.producers.encode_snapshot())
            };
            self.write_snapshot(off, &data).await
        }
        .await;
        self.cache.invalidate(self.id);
        self.files.forget_dir(&self.dir);
        let mut i = self.inner.borrow_mut();
        i.closed = true;
        if let Err(e) = r {
            i.failed = true;
            return Err(e.into());
        }
        Ok(())
    }
}

impl<F: FileSystem> Drop for Log<F> {
    /// A log dropped without `close` (a failed open, a shard stopping) leaves no file in the pool.
    fn drop(&mut self) {
        self.files.forget_dir(&self.dir);
    }
}
