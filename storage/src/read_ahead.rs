//! Read-ahead for sequential readers of a log ("catch-up" consumers reading from disk).
//!
//! Segment data is read with O_DIRECT: no page cache, so nothing reads ahead unless the log does. A
//! consumer far behind the tail fetches, say, 1 MiB per partition per request; read synchronously,
//! each fetch waits for one disk read at queue depth 1, and the disk idles while the response is sent
//! and the next request comes in. With read-ahead the log notices a sequential reader and keeps
//! several large reads in flight ahead of it, so the next fetch finds its bytes in memory.
//!
//! # Streams and chunks
//! Each log has a [`ReadAhead`] tracking up to four readers (*streams*): for each, the segment it
//! reads, and the offset and file position where its last read ended. A read that starts exactly
//! there (the next offset, in the same segment or at the start of the next one) is *sequential*. A
//! sequential read first makes sure that *chunks* — `chunk_bytes` reads of the segment file, aligned,
//! contiguous — cover up to `chunks_per_reader` chunks past the reader's position, started in the
//! background ([`StorageFile::start_read`]) so that they proceed together; then it takes its batches
//! from the chunks (any stream's, so readers close together share them), waiting for a chunk still
//! in flight rather than reading the same bytes again. A batch that spans two chunks is returned as
//! two slices (a read's answer is a list of buffers whose concatenation is the batches): no copy.
//! Bytes the chunks do not hold are read as before (`segment::scan`). Chunks the reader has passed
//! are dropped.
//!
//! A read that is not sequential starts a new stream at its own end without reading ahead (a reader
//! must read twice in a row before the log spends memory on it), replacing the least recently used
//! stream when there are four. So several consumer groups catching up on one partition each keep
//! their own stream.
//!
//! # Memory
//! Chunks are reserved from the shard's [`ReadAheadBudget`] (held by the `SegmentFilePool`, so every
//! log of a shard shares it), separate from the batch cache: catch-up readers never evict what
//! tailing readers are served from. Each reader's depth is at most its fair share: the budget
//! divided among the streams reading ahead, so that many readers each keep some chunks rather than the
//! first ones taking them all. Streams idle for `reclaim_idle` give their chunks up (looked for once
//! per `reclaim_idle`, and whenever the budget is spent); failing that, a reader gets fewer chunks (at
//! worst none, and reads as without read-ahead). A reservation is released when its chunk is dropped; slices already handed to a fetch
//! response keep their memory until the response is sent.
//!
//! # Consistency
//! A chunk only covers bytes below the segment size seen when it was started, and bytes below a
//! segment's size never change while the segment exists (appends only add past it; rewriting the
//! partial tail block writes the same bytes again). Whatever replaces or removes a segment's file —
//! truncation, retention, the cleaner's swap, close — drops the log's streams
//! (`LocalLog::forget_file`).

use crate::batch::{self, BatchHeader, HEADER_SIZE};
use crate::io::{BackgroundRead, StorageFile};
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

/// Reads are aligned to this (O_DIRECT's usual block size).
const ALIGNMENT: u64 = 4096;

/// A spent budget looks for idle streams at most this often (each look walks the shard's logs).
const RECLAIM_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadAheadConfig {
    /// Per shard: bytes of chunks in memory or in flight at once (0 disables read-ahead).
    pub budget_bytes: usize,
    /// The size of one background read (rounded up to a multiple of 4 KiB).
    pub chunk_bytes: usize,
    /// Chunks kept ahead of one sequential reader (fewer when the budget's fair share is smaller).
    pub chunks_per_reader: usize,
    /// A stream unused this long gives its chunks up (looked for at most this often, and whenever the
    /// budget is spent).
    pub reclaim_idle: Duration,
}

impl Default for ReadAheadConfig {
    fn default() -> Self {
        ReadAheadConfig {
            budget_bytes: 64 << 20,
            chunk_bytes: 1 << 20,
            chunks_per_reader: 4,
            reclaim_idle: Duration::from_secs(1),
        }
    }
}

/// What read-ahead did on a shard (tests and diagnostics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadAheadStats {
    /// Background reads started.
    pub chunks_started: u64,
    /// Batches served from chunks.
    pub batches_served: u64,
    /// Times a read waited for a chunk still in flight.
    pub waits: u64,
    /// Chunks not started because the budget was spent.
    pub refusals: u64,
}

/// A log's side of the budget: how the budget takes chunks back from idle streams.
trait Reclaim {
    /// Drops the chunks of the streams unused for `idle` or longer.
    fn release_idle(&self, now: Instant, idle: Duration);
}

/// The shard's read-ahead memory, shared by its logs.
pub struct ReadAheadBudget {
    config: ReadAheadConfig,
    used: Cell<usize>,
    /// Streams reading ahead (see `Stream::holding`): the budget's fair share per reader divides by this.
    holders: Cell<usize>,
    /// When idle streams were last looked for: on schedule (`sweep_if_due`), and on demand (`reserve`).
    last_sweep: Cell<Instant>,
    last_reclaim: Cell<Instant>,
    stats: Cell<ReadAheadStats>,
    streams: RefCell<Vec<Weak<dyn Reclaim>>>,
}

impl ReadAheadBudget {
    pub fn new(mut config: ReadAheadConfig) -> Self {
        config.chunk_bytes =
            (config.chunk_bytes.max(1) as u64).next_multiple_of(ALIGNMENT) as usize;
        ReadAheadBudget {
            config,
            used: Cell::new(0),
            holders: Cell::new(0),
            last_sweep: Cell::new(Instant::now()),
            last_reclaim: Cell::new(Instant::now()),
            stats: Cell::new(ReadAheadStats::default()),
            streams: RefCell::new(Vec::new()),
        }
    }

    pub fn config(&self) -> ReadAheadConfig {
        self.config
    }

    /// Bytes reserved by chunks now.
    pub fn used_bytes(&self) -> usize {
        self.used.get()
    }

    pub fn stats(&self) -> ReadAheadStats {
        self.stats.get()
    }

    fn count(&self, update: impl FnOnce(&mut ReadAheadStats)) {
        let mut stats = self.stats.get();
        update(&mut stats);
        self.stats.set(stats);
    }

    /// Reserves `bytes` for a chunk of `requester`, taking the chunks of idle streams back first when
    /// the budget is spent (a walk over the shard's logs: at most every [`RECLAIM_INTERVAL`]).
    fn reserve(self: &Rc<Self>, bytes: usize, requester: *const ()) -> Option<Reservation> {
        if self.used.get() + bytes > self.config.budget_bytes {
            let now = Instant::now();
            if now.saturating_duration_since(self.last_reclaim.get()) >= RECLAIM_INTERVAL {
                self.last_reclaim.set(now);
                self.reclaim_idle(requester);
            }
        }
        if self.used.get() + bytes > self.config.budget_bytes {
            self.count(|stats| stats.refusals += 1);
            return None;
        }
        self.used.set(self.used.get() + bytes);
        Some(Reservation {
            budget: self.clone(),
            bytes,
        })
    }

    /// At most once per `reclaim_idle`: drops the chunks of every stream idle that long, so that readers
    /// that went away neither keep memory nor count among the readers sharing the budget. The caller
    /// must not hold any log's streams borrowed.
    fn sweep_if_due(&self) {
        let now = Instant::now();
        if now.saturating_duration_since(self.last_sweep.get()) < self.config.reclaim_idle {
            return;
        }
        self.last_sweep.set(now);
        self.reclaim_idle(std::ptr::null());
    }

    fn reclaim_idle(&self, requester: *const ()) {
        let now = Instant::now();
        let streams: Vec<Rc<dyn Reclaim>> = {
            let mut streams = self.streams.borrow_mut();
            streams.retain(|stream| stream.strong_count() > 0);
            streams.iter().filter_map(Weak::upgrade).collect()
        };
        for log in streams {
            if Rc::as_ptr(&log) as *const () != requester {
                log.release_idle(now, self.config.reclaim_idle);
            }
        }
    }
}

/// Budget bytes held by one chunk, given back when the chunk is dropped.
struct Reservation {
    budget: Rc<ReadAheadBudget>,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.set(self.budget.used.get() - self.bytes);
    }
}

/// A stream's place among the readers sharing the budget, kept while the stream reads ahead.
struct Holding {
    budget: Rc<ReadAheadBudget>,
}

impl Holding {
    fn new(budget: &Rc<ReadAheadBudget>) -> Self {
        budget.holders.set(budget.holders.get() + 1);
        Holding {
            budget: budget.clone(),
        }
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.budget.holders.set(self.budget.holders.get() - 1);
    }
}

struct Chunk {
    position: u64,
    len: u64,
    read: BackgroundRead,
    _reservation: Reservation,
}

struct Stream {
    id: u64,
    /// The segment read. (Not its file: a stream must not hold a descriptor open beyond the shard's
    /// `SegmentFilePool`; a chunk's read holds it only while in flight.)
    base: i64,
    /// The offset after the last batch a read returned, and the position where that batch ended.
    next_offset: i64,
    next_position: u64,
    /// Chunks started, ascending and contiguous, ending at `started_end`.
    chunks: VecDeque<Chunk>,
    started_end: u64,
    last_used: Instant,
    /// Present while the stream reads ahead (from its first sequential read until it is dropped or
    /// found idle), counting it among the readers the budget is shared by.
    holding: Option<Holding>,
}

impl Stream {
    fn new(id: u64, base: i64, next_offset: i64, next_position: u64) -> Self {
        Stream {
            id,
            base,
            next_offset,
            next_position,
            chunks: VecDeque::new(),
            started_end: 0,
            last_used: Instant::now(),
            holding: None,
        }
    }

    /// Drops the chunks (and the stream's place among the budget's holders).
    fn drop_chunks(&mut self) {
        self.chunks.clear();
        self.started_end = 0;
        self.holding = None;
    }
}

/// A log's streams, at most [`STREAMS_PER_LOG`].
struct Streams {
    streams: RefCell<Vec<Stream>>,
    next_id: Cell<u64>,
}

impl Reclaim for Streams {
    fn release_idle(&self, now: Instant, idle: Duration) {
        for stream in self.streams.borrow_mut().iter_mut() {
            if now.saturating_duration_since(stream.last_used) >= idle {
                stream.drop_chunks();
            }
        }
    }
}

/// Readers of one log tracked at once; a new one replaces the least recently used.
const STREAMS_PER_LOG: usize = 4;

/// Where a read starts, as the log's streams see it.
pub(crate) struct Resume {
    /// The stream the read continues (it may be read ahead for); `None`: not a sequential read.
    pub(crate) stream: Option<u64>,
    /// Where in the segment the read's first batch is, when the stream knows it (saves the scan
    /// from the offset index's entry).
    pub(crate) position: Option<u64>,
}

/// One log's read-ahead (see the module documentation).
pub(crate) struct ReadAhead {
    budget: Rc<ReadAheadBudget>,
    slot: Rc<Streams>,
}

impl ReadAhead {
    pub(crate) fn new(budget: Rc<ReadAheadBudget>) -> Self {
        let slot = Rc::new(Streams {
            streams: RefCell::new(Vec::new()),
            next_id: Cell::new(0),
        });
        let weak: Weak<dyn Reclaim> = Rc::downgrade(&slot) as Weak<dyn Reclaim>;
        budget.streams.borrow_mut().push(weak);
        ReadAhead { budget, slot }
    }

    fn enabled(&self) -> bool {
        self.budget.config.budget_bytes > 0 && self.budget.config.chunks_per_reader > 0
    }

    /// Drops the streams and their chunks (the segment files changed).
    pub(crate) fn clear(&self) {
        self.slot.streams.borrow_mut().clear();
    }

    /// Called as a read of `offset` in segment `base` starts: the stream it continues, if any, whose
    /// chunks ahead of it are then started.
    pub(crate) fn begin<File: StorageFile>(
        &self,
        base: i64,
        file: &File,
        size: u64,
        offset: i64,
    ) -> Resume {
        let mut resume = Resume {
            stream: None,
            position: None,
        };
        if !self.enabled() {
            return resume;
        }
        {
            let mut streams = self.slot.streams.borrow_mut();
            let Some(stream) = streams
                .iter_mut()
                .find(|stream| stream.next_offset == offset)
            else {
                return resume;
            };
            stream.last_used = Instant::now();
            resume.stream = Some(stream.id);
            if stream.base == base {
                resume.position = Some(stream.next_position);
            } else {
                // The reader finished the previous segment: the stream moves to this one.
                *stream = Stream::new(stream.id, base, offset, 0);
            }
        }
        self.start_chunks(resume.stream, file, size);
        resume
    }

    /// Called as a read of segment `base` ends: the offset after the last batch it returned and that
    /// batch's end position. A sequential read tops its stream's chunks up; any other starts a stream
    /// here (without chunks: it must read on from here to earn them).
    pub(crate) fn end<File: StorageFile>(
        &self,
        base: i64,
        file: &File,
        size: u64,
        resume: &Resume,
        next_offset: i64,
        next_position: u64,
    ) {
        if !self.enabled() {
            return;
        }
        {
            let mut streams = self.slot.streams.borrow_mut();
            let continued = resume.stream.and_then(|id| {
                streams
                    .iter_mut()
                    .find(|stream| stream.id == id && stream.base == base)
            });
            match continued {
                Some(stream) => {
                    stream.next_offset = next_offset;
                    stream.next_position = next_position;
                    stream.last_used = Instant::now();
                    // Chunks wholly behind the reader are done with.
                    while stream
                        .chunks
                        .front()
                        .is_some_and(|chunk| chunk.position + chunk.len <= next_position)
                    {
                        stream.chunks.pop_front();
                    }
                }
                None => {
                    if streams.len() >= STREAMS_PER_LOG {
                        let oldest = (0..streams.len())
                            .min_by_key(|&index| streams[index].last_used)
                            .expect("streams");
                        streams.swap_remove(oldest);
                    }
                    let id = self.slot.next_id.get();
                    self.slot.next_id.set(id + 1);
                    streams.push(Stream::new(id, base, next_offset, next_position));
                    return;
                }
            }
        }
        self.start_chunks(resume.stream, file, size);
    }

    /// Starts chunks of `file` from stream `id`'s position until `chunks_per_reader` chunks lie ahead of it,
    /// none past `size`, as far as the budget allows.
    fn start_chunks<File: StorageFile>(&self, id: Option<u64>, file: &File, size: u64) {
        let config = self.budget.config;
        let chunk_bytes = config.chunk_bytes as u64;
        let requester = Rc::as_ptr(&self.slot) as *const ();
        self.budget.sweep_if_due();
        let mut streams = self.slot.streams.borrow_mut();
        let Some(stream) = streams.iter_mut().find(|stream| Some(stream.id) == id) else {
            return;
        };
        if stream.chunks.is_empty() || stream.started_end < stream.next_position {
            stream.drop_chunks();
            stream.started_end = stream.next_position - stream.next_position % ALIGNMENT;
        }
        // A fair share: the budget divided among the streams holding chunks, this one included, so
        // that with many readers each keeps some chunks rather than the first ones taking them all.
        let holders = self.budget.holders.get() + usize::from(stream.holding.is_none());
        let fair_share = (config.budget_bytes / config.chunk_bytes / holders.max(1)).max(1);
        let depth = config.chunks_per_reader.min(fair_share) as u64;
        let window_end = (stream.next_position - stream.next_position % ALIGNMENT)
            .saturating_add(chunk_bytes * depth)
            .min(size);
        while stream.started_end < window_end {
            let position = stream.started_end;
            // Chunks end on chunk boundaries, so that later ones stay aligned.
            let boundary = (position / chunk_bytes + 1) * chunk_bytes;
            let len = boundary.min(size) - position;
            let Some(reservation) = self.budget.reserve(len as usize, requester) else {
                break;
            };
            let Some(read) = file.start_read(position, len as usize) else {
                break; // this file cannot read in the background: nothing to gain
            };
            self.budget.count(|stats| stats.chunks_started += 1);
            stream.chunks.push_back(Chunk {
                position,
                len,
                read,
                _reservation: reservation,
            });
            stream.started_end = position + len;
        }
        if stream.holding.is_none() {
            stream.holding = Some(Holding::new(&self.budget));
        }
    }

    /// Visits the batches of segment `base` from `start` (a batch boundary) up to `end` that the
    /// chunks hold, as [`crate::segment::scan`] does but with each batch as one or more slices of
    /// chunks. Returns where it stopped and whether `visit` stopped it (else the chunks ran out, or
    /// the bytes there are not a sound batch header: the caller reads on from the file).
    pub(crate) async fn scan(
        &self,
        base: i64,
        start: u64,
        end: u64,
        visit: &mut impl FnMut(u64, &BatchHeader, &[Bytes]) -> bool,
    ) -> (u64, bool) {
        let mut position = start;
        let mut parts: Vec<Bytes> = Vec::new();
        while position + HEADER_SIZE as u64 <= end {
            parts.clear();
            if !self
                .gather(base, position, HEADER_SIZE as u64, &mut parts)
                .await
            {
                break;
            }
            let mut header_bytes = [0u8; HEADER_SIZE];
            let mut filled = 0;
            for part in &parts {
                header_bytes[filled..filled + part.len()].copy_from_slice(part);
                filled += part.len();
            }
            let Ok(header) = batch::check_header(&header_bytes) else {
                break;
            };
            let size = header.total_size() as u64;
            if position + size > end {
                break;
            }
            parts.clear();
            if !self.gather(base, position, size, &mut parts).await {
                break;
            }
            self.budget.count(|stats| stats.batches_served += 1);
            if !visit(position, &header, &parts) {
                return (position, true);
            }
            position += size;
        }
        (position, false)
    }

    /// Appends to `parts` the slices of chunks holding `[position, position + len)` of segment
    /// `base`, waiting for chunks in flight; false when the chunks do not hold all of it.
    async fn gather(&self, base: i64, position: u64, len: u64, parts: &mut Vec<Bytes>) -> bool {
        let stop = position + len;
        let mut at = position;
        while at < stop {
            let Some((chunk_position, bytes)) = self.chunk_holding(base, at).await else {
                return false;
            };
            let from = (at - chunk_position) as usize;
            let to = ((stop - chunk_position) as usize).min(bytes.len());
            if from >= to {
                return false; // a short read: the file ended before the chunk did
            }
            parts.push(bytes.slice(from..to));
            at = chunk_position + to as u64;
        }
        true
    }

    /// The chunk of segment `base` holding `position`: its start and bytes, once read.
    async fn chunk_holding(&self, base: i64, position: u64) -> Option<(u64, Bytes)> {
        let (chunk_position, read) = {
            let streams = self.slot.streams.borrow();
            let chunk = streams
                .iter()
                .filter(|stream| stream.base == base)
                .flat_map(|stream| stream.chunks.iter())
                .find(|chunk| {
                    chunk.position <= position && position < chunk.position + chunk.len
                })?;
            (chunk.position, chunk.read.clone())
        };
        let result = match read.try_result() {
            Some(result) => result,
            None => {
                self.budget.count(|stats| stats.waits += 1);
                read.result().await
            }
        };
        match result {
            Ok(bytes) => Some((chunk_position, bytes)),
            Err(_) => {
                // The caller reads the same bytes from the file and meets (and reports) the error.
                self.clear();
                None
            }
        }
    }
}
