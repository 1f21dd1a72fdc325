//! Read-ahead for sequential readers of a log ("catch-up" consumers reading from disk).
//!
//! Segment data is read with O_DIRECT: no page cache, so nothing reads ahead unless the log does. A
//! consumer far behind the tail fetches, say, 1 MiB per partition per request; read synchronously,
//! each fetch waits for one disk read at queue depth 1, and the disk idles while the response is sent
//! and the next request comes in. With read-ahead the log notices a sequential reader and keeps
//! several large reads in flight ahead of it, so the next fetch finds its bytes in memory.
//!
//! # Streams and chunks
//! Each log has one [`ReadAhead`], tracking one reader (a *stream*): the segment it reads, and the
//! offset and file position where its last read ended. A read that starts exactly there (the next
//! offset, in the same segment or at the start of the next one) is *sequential*. A sequential read
//! first makes sure that *chunks* — `chunk_bytes` reads of the segment file, aligned, contiguous —
//! cover up to `chunks_per_reader` chunks past the reader's position, started in the background
//! ([`StorageFile::start_read`]) so that they proceed together; then it takes its batches from the
//! chunks, waiting for a chunk still in flight rather than reading the same bytes again. A batch that
//! spans two chunks is returned as two slices (a read's answer is a list of buffers whose
//! concatenation is the batches): no copy. Bytes the chunks do not hold are read as before
//! (`segment::scan`). Chunks the reader has passed are dropped.
//!
//! A read that is not sequential restarts the stream at its own end without reading ahead: a reader
//! must read twice in a row before the log spends memory on it. One stream per log: two consumers
//! reading the same partition at different places take turns restarting it and are served as
//! without read-ahead (correctly, only slower).
//!
//! # Memory
//! Chunks are reserved from the shard's [`ReadAheadBudget`] (held by the `SegmentFilePool`, so every
//! log of a shard shares it), separate from the batch cache: catch-up readers never evict what
//! tailing readers are served from. When the budget is spent, a stream idle for `reclaim_idle` gives
//! its chunks up; otherwise the reader gets fewer chunks (at worst none, and reads as without
//! read-ahead). A reservation is released when its chunk is dropped; slices already handed to a fetch
//! response keep their memory until the response is sent.
//!
//! # Consistency
//! A chunk only covers bytes below the segment size seen when it was started, and bytes below a
//! segment's size never change while the segment exists (appends only add past it; rewriting the
//! partial tail block writes the same bytes again). Whatever replaces or removes a segment's file —
//! truncation, retention, the cleaner's swap, close — drops the stream (`LocalLog::forget_file`).

use crate::batch::{self, BatchHeader, HEADER_SIZE};
use crate::io::{BackgroundRead, StorageFile};
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

/// Reads are aligned to this (O_DIRECT's usual block size).
const ALIGNMENT: u64 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadAheadConfig {
    /// Per shard: bytes of chunks in memory or in flight at once (0 disables read-ahead).
    pub budget_bytes: usize,
    /// The size of one background read (rounded up to a multiple of 4 KiB).
    pub chunk_bytes: usize,
    /// Chunks kept ahead of one sequential reader.
    pub chunks_per_reader: usize,
    /// A stream unused this long gives its chunks up when another needs the budget.
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

/// A stream's side of the budget: how the budget takes chunks back from an idle one.
trait Reclaim {
    fn idle_for(&self, now: Instant) -> Duration;
    fn release(&self);
}

/// The shard's read-ahead memory, shared by its logs.
pub struct ReadAheadBudget {
    config: ReadAheadConfig,
    used: Cell<usize>,
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
    /// the budget is spent.
    fn reserve(self: &Rc<Self>, bytes: usize, requester: *const ()) -> Option<Reservation> {
        if self.used.get() + bytes > self.config.budget_bytes {
            self.reclaim_idle(requester);
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

    fn reclaim_idle(&self, requester: *const ()) {
        let now = Instant::now();
        let streams: Vec<Rc<dyn Reclaim>> = {
            let mut streams = self.streams.borrow_mut();
            streams.retain(|stream| stream.strong_count() > 0);
            streams.iter().filter_map(Weak::upgrade).collect()
        };
        for stream in streams {
            let this = Rc::as_ptr(&stream) as *const ();
            if this != requester && stream.idle_for(now) >= self.config.reclaim_idle {
                stream.release();
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

struct Chunk {
    position: u64,
    len: u64,
    read: BackgroundRead,
    _reservation: Reservation,
}

struct Stream<File> {
    /// The segment read, and its file.
    base: i64,
    file: Rc<File>,
    /// The offset after the last batch a read returned, and the position where that batch ended.
    next_offset: i64,
    next_position: u64,
    /// Chunks started, ascending and contiguous, ending at `started_end`.
    chunks: VecDeque<Chunk>,
    started_end: u64,
}

struct StreamSlot<File> {
    stream: RefCell<Option<Stream<File>>>,
    last_used: Cell<Instant>,
}

impl<File: 'static> Reclaim for StreamSlot<File> {
    fn idle_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_used.get())
    }
    fn release(&self) {
        if let Some(stream) = self.stream.borrow_mut().as_mut() {
            stream.chunks.clear();
            stream.started_end = 0;
        }
    }
}

/// Where a read starts, as the stream sees it.
pub(crate) struct Resume {
    /// The read continues the stream: it may be read ahead for.
    pub(crate) sequential: bool,
    /// Where in the segment the read's first batch is, when the stream knows it (saves the scan
    /// from the offset index's entry).
    pub(crate) position: Option<u64>,
}

/// One log's read-ahead (see the module documentation).
pub(crate) struct ReadAhead<File> {
    budget: Rc<ReadAheadBudget>,
    slot: Rc<StreamSlot<File>>,
}

impl<File: StorageFile> ReadAhead<File> {
    pub(crate) fn new(budget: Rc<ReadAheadBudget>) -> Self {
        let slot = Rc::new(StreamSlot {
            stream: RefCell::new(None),
            last_used: Cell::new(Instant::now()),
        });
        let weak: Weak<dyn Reclaim> = Rc::downgrade(&slot) as Weak<dyn Reclaim>;
        budget.streams.borrow_mut().push(weak);
        ReadAhead { budget, slot }
    }

    fn enabled(&self) -> bool {
        self.budget.config.budget_bytes > 0 && self.budget.config.chunks_per_reader > 0
    }

    /// Drops the stream and its chunks (the segment files changed).
    pub(crate) fn clear(&self) {
        self.slot.stream.borrow_mut().take();
    }

    /// Called as a read of `offset` in segment `base` starts: whether it continues the stream, and
    /// if so starts the chunks ahead of it.
    pub(crate) fn begin(&self, base: i64, file: &Rc<File>, size: u64, offset: i64) -> Resume {
        if !self.enabled() {
            return Resume {
                sequential: false,
                position: None,
            };
        }
        self.slot.last_used.set(Instant::now());
        let resume = {
            let mut stream = self.slot.stream.borrow_mut();
            match stream.as_mut() {
                Some(stream) if stream.next_offset == offset && stream.base == base => Resume {
                    sequential: true,
                    position: Some(stream.next_position),
                },
                Some(stream) if stream.next_offset == offset => {
                    // The reader finished the previous segment: the stream moves to this one.
                    *stream = Stream {
                        base,
                        file: file.clone(),
                        next_offset: offset,
                        next_position: 0,
                        chunks: VecDeque::new(),
                        started_end: 0,
                    };
                    Resume {
                        sequential: true,
                        position: None,
                    }
                }
                _ => Resume {
                    sequential: false,
                    position: None,
                },
            }
        };
        if resume.sequential {
            self.start_chunks(size);
        }
        resume
    }

    /// Called as a read of segment `base` ends: the offset after the last batch it returned and that
    /// batch's end position. A sequential read tops the chunks up; any other restarts the stream here.
    pub(crate) fn end(
        &self,
        base: i64,
        file: &Rc<File>,
        size: u64,
        sequential: bool,
        next_offset: i64,
        next_position: u64,
    ) {
        if !self.enabled() {
            return;
        }
        {
            let mut slot = self.slot.stream.borrow_mut();
            match slot.as_mut() {
                Some(stream) if sequential && stream.base == base => {
                    stream.next_offset = next_offset;
                    stream.next_position = next_position;
                    // Chunks wholly behind the reader are done with.
                    while stream
                        .chunks
                        .front()
                        .is_some_and(|chunk| chunk.position + chunk.len <= next_position)
                    {
                        stream.chunks.pop_front();
                    }
                }
                _ => {
                    *slot = Some(Stream {
                        base,
                        file: file.clone(),
                        next_offset,
                        next_position,
                        chunks: VecDeque::new(),
                        started_end: 0,
                    });
                    return;
                }
            }
        }
        self.start_chunks(size);
    }

    /// Starts chunks from the reader's position until `chunks_per_reader` chunks lie ahead of it, none
    /// past `size`, as far as the budget allows.
    fn start_chunks(&self, size: u64) {
        let config = self.budget.config;
        let chunk_bytes = config.chunk_bytes as u64;
        let requester = Rc::as_ptr(&self.slot) as *const ();
        let mut slot = self.slot.stream.borrow_mut();
        let Some(stream) = slot.as_mut() else {
            return;
        };
        if stream.chunks.is_empty() || stream.started_end < stream.next_position {
            stream.chunks.clear();
            stream.started_end = stream.next_position - stream.next_position % ALIGNMENT;
        }
        let window_end = (stream.next_position - stream.next_position % ALIGNMENT)
            .saturating_add(chunk_bytes * config.chunks_per_reader as u64)
            .min(size);
        while stream.started_end < window_end {
            let position = stream.started_end;
            // Chunks end on chunk boundaries, so that later ones stay aligned.
            let boundary = (position / chunk_bytes + 1) * chunk_bytes;
            let len = boundary.min(size) - position;
            let Some(reservation) = self.budget.reserve(len as usize, requester) else {
                break;
            };
            let Some(read) = stream.file.start_read(position, len as usize) else {
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
            let stream = self.slot.stream.borrow();
            let stream = stream.as_ref().filter(|stream| stream.base == base)?;
            let chunk = stream.chunks.iter().find(|chunk| {
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
