//! An append-only writer that honours [`StorageFile::write_alignment`].
//!
//! With an alignment of 1 (buffered files) it writes exactly the appended bytes. With an alignment
//! `A > 1` (O_DIRECT) it keeps the partial last page in memory and each flush writes from the
//! aligned start of that page through the new data, zero-padded up to a multiple of `A`: the file
//! may therefore end with up to `A - 1` zero bytes past the logical size, which a clean close
//! removes with a truncate and recovery treats like a torn tail.
//!
//! Appends and flushes must be serialized by the caller (the log's writer lock); the internal
//! `RefCell` is never borrowed across an `.await`.
//!
//! # Reserving ahead (segment data under O_DIRECT)
//! An appender with a reserve window ([`Appender::set_reserve_window`]) keeps the file's allocated
//! size ahead of its writes, a window at a time ([`StorageFile::allocate`]: the file's visible size
//! grows with it, its new blocks read as zeros). On ext4 an O_DIRECT write that extends the file, or that covers both written blocks
//! and reserved ("unwritten") ones, needs the inode lock exclusively: io_uring cannot issue it
//! without blocking and hands it to an io-wq worker thread (a wake-up and two context switches per
//! append). A write inside the reserved size that covers only written blocks, or only unwritten
//! ones, is issued inline. So a flush of up to 64 KiB that rewrites the partial last page and
//! continues into new pages is issued as two writes, submitted together: the rewritten page, then
//! the new pages.
//!
//! The file may then end with up to a window of zeros past the logical size: a clean close (and a
//! roll) truncates them, and recovery after a crash cuts them like a torn tail.

use crate::io::StorageFile;
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;

struct State {
    /// Bytes appended (logical file size, including not yet written ones).
    logical: u64,
    /// Bytes that are in the file (writes completed).
    written: u64,
    /// File position of the first byte of `tail`: `written` rounded down to the alignment.
    buf_start: u64,
    /// Bytes `[buf_start, written)`: the written part of the last, partial page (less than one
    /// alignment unit; always empty with alignment 1). Rewritten in front of the next write.
    tail: Vec<u8>,
    /// Bytes `[written, logical)`, as appended: the callers' buffers, not copies.
    pending: Vec<Bytes>,
}

pub struct Appender<Fl: StorageFile> {
    file: Rc<Fl>,
    align: u64,
    /// Reserve this many bytes at a time ahead of the writes (0: never; see the module doc).
    reserve_window: Cell<u64>,
    /// The file size last reserved (or, before the first reservation, the size at open).
    reserved: Cell<u64>,
    state: RefCell<State>,
}

impl<Fl: StorageFile> Appender<Fl> {
    /// An appender continuing a file whose logical size is `size`. With alignment > 1 the partial
    /// last page is read back so that the next flush can rewrite it whole.
    pub async fn open(file: Rc<Fl>, size: u64) -> io::Result<Self> {
        let align = file.write_alignment().max(1) as u64;
        let buf_start = size / align * align;
        let tail = if buf_start < size {
            let bytes = file.read_at(buf_start, (size - buf_start) as usize).await?;
            if (bytes.len() as u64) < size - buf_start {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shorter than its logical size",
                ));
            }
            bytes[..(size - buf_start) as usize].to_vec()
        } else {
            Vec::new()
        };
        Ok(Appender {
            file,
            align,
            reserve_window: Cell::new(0),
            reserved: Cell::new(size),
            state: RefCell::new(State {
                logical: size,
                written: size,
                buf_start,
                tail,
                pending: Vec::new(),
            }),
        })
    }

    /// From the next flush on, reserves the file's space `window` bytes at a time ahead of the
    /// writes (0: stop; see the module doc). Only for files written with an alignment above 1
    /// (O_DIRECT); others ignore it.
    pub fn set_reserve_window(&self, window: u64) {
        if self.align > 1 {
            self.reserve_window.set(window.next_multiple_of(self.align));
        }
    }

    pub fn file(&self) -> &Rc<Fl> {
        &self.file
    }

    /// Logical size: every appended byte, written or not.
    pub fn logical_size(&self) -> u64 {
        self.state.borrow().logical
    }

    /// Bytes whose write has completed.
    pub fn written_size(&self) -> u64 {
        self.state.borrow().written
    }

    /// Queues `data` for the next flush (kept by reference: no copy).
    pub fn append(&self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let mut state = self.state.borrow_mut();
        state.logical += data.len() as u64;
        state.pending.push(data);
    }

    /// Drops what was appended after the logical size `size` and not written yet (a write that
    /// failed is abandoned: its batches are not acknowledged). `size` must lie between the written
    /// size and the logical size, on a boundary between appended buffers.
    pub fn discard_after(&self, size: u64) {
        let mut state = self.state.borrow_mut();
        assert!(
            state.written <= size && size <= state.logical,
            "discard to {size} outside [{}, {}]",
            state.written,
            state.logical
        );
        while state.logical > size {
            let last = state
                .pending
                .pop()
                .expect("appended buffers past the written size");
            state.logical -= last.len() as u64;
        }
        assert_eq!(
            state.logical, size,
            "discard to {size} splits an appended buffer"
        );
    }

    /// Writes everything appended so far: the partial page and the queued buffers in one gather write.
    pub async fn flush(&self) -> io::Result<()> {
        let (start, tail, pending, logical) = {
            let mut state = self.state.borrow_mut();
            if state.logical == state.written {
                return Ok(());
            }
            (
                state.buf_start,
                std::mem::take(&mut state.tail),
                std::mem::take(&mut state.pending),
                state.logical,
            )
        };
        let data_len = (logical - start) as usize;
        let padded = (data_len as u64).div_ceil(self.align) * self.align;
        debug_assert_eq!(start % self.align, 0);
        let mut parts: Vec<&[u8]> = Vec::with_capacity(pending.len() + 1);
        parts.push(&tail);
        parts.extend(pending.iter().map(|part| &part[..]));
        debug_assert_eq!(parts.iter().map(|part| part.len()).sum::<usize>(), data_len);
        let reserving = self.reserve_window.get() > 0;
        if reserving {
            self.reserve(start + padded).await;
        }
        let split =
            reserving && !tail.is_empty() && padded > self.align && padded <= SPLIT_WRITES_UP_TO;
        let result = if split {
            // The rewritten page and the new ones apart (see the module doc).
            let (page, rest) = split_parts(&parts, self.align as usize);
            let (first, second) = futures_lite::future::zip(
                self.file.write_parts_at(start, &page, self.align as usize),
                self.file
                    .write_parts_at(start + self.align, &rest, (padded - self.align) as usize),
            )
            .await;
            first.and(second)
        } else {
            self.file
                .write_parts_at(start, &parts, padded as usize)
                .await
        };
        let mut state = self.state.borrow_mut();
        match result {
            Ok(()) => {
                state.written = logical;
                let new_start = logical / self.align * self.align;
                state.tail = last_bytes(&parts, (logical - new_start) as usize);
                state.buf_start = new_start;
                // Appends made while we were writing (none under the writer lock) stay queued.
            }
            Err(_) => {
                state.tail = tail;
                let later = std::mem::replace(&mut state.pending, pending);
                state.pending.extend(later);
            }
        }
        result
    }
}

/// Flushes up to this size are split (see the module doc); a larger one goes out as one write even
/// though ext4 hands it to an io-wq worker: its cost is spread over many bytes, and two writes per
/// large flush cost more (measured at full load; see BENCHMARKS.md).
const SPLIT_WRITES_UP_TO: u64 = 64 << 10;

impl<Fl: StorageFile> Appender<Fl> {
    /// Makes sure the file is reserved through `end`, a window past it at a time. A failed reservation
    /// is not an error (the write that follows reports a full disk); it is not retried before the
    /// next window.
    async fn reserve(&self, end: u64) {
        if end <= self.reserved.get() {
            return;
        }
        let window = self.reserve_window.get();
        let target = (end + window).next_multiple_of(window);
        let from = self.reserved.get();
        if let Err(error) = self.file.allocate(from, target - from).await {
            tracing::debug!(%error, target, "reserving segment space failed");
        }
        self.reserved.set(target);
    }
}

/// `parts` cut after their first `at` bytes (the parts hold at least `at` bytes).
fn split_parts<'a>(parts: &[&'a [u8]], at: usize) -> (Vec<&'a [u8]>, Vec<&'a [u8]>) {
    let (mut first, mut second) = (Vec::new(), Vec::with_capacity(parts.len()));
    let mut left = at;
    for part in parts {
        if left >= part.len() {
            first.push(*part);
            left -= part.len();
        } else {
            let (head, rest) = part.split_at(left);
            if !head.is_empty() {
                first.push(head);
            }
            left = 0;
            second.push(rest);
        }
    }
    (first, second)
}

/// The last `count` bytes of the concatenation of `parts` (`count` is below the alignment: small).
fn last_bytes(parts: &[&[u8]], count: usize) -> Vec<u8> {
    let mut out = vec![0u8; count];
    let mut missing = count;
    for part in parts.iter().rev() {
        if missing == 0 {
            break;
        }
        let take = missing.min(part.len());
        out[missing - take..missing].copy_from_slice(&part[part.len() - take..]);
        missing -= take;
    }
    assert_eq!(missing, 0, "the parts hold at least `count` bytes");
    out
}
