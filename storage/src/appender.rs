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

use crate::io::StorageFile;
use std::cell::RefCell;
use std::io;
use std::rc::Rc;

struct State {
    /// Bytes appended (logical file size, including not yet written ones).
    logical: u64,
    /// Bytes that are in the file (writes completed).
    written: u64,
    /// File position of `buf[0]`: `written` rounded down to the alignment.
    buf_start: u64,
    /// Bytes `[buf_start, logical)`.
    buf: Vec<u8>,
}

pub struct Appender<Fl: StorageFile> {
    file: Rc<Fl>,
    align: u64,
    state: RefCell<State>,
}

impl<Fl: StorageFile> Appender<Fl> {
    /// An appender continuing a file whose logical size is `size`. With alignment > 1 the partial
    /// last page is read back so that the next flush can rewrite it whole.
    pub async fn open(file: Rc<Fl>, size: u64) -> io::Result<Self> {
        let align = file.write_alignment().max(1) as u64;
        let buf_start = size / align * align;
        let buf = if buf_start < size {
            let b = file.read_at(buf_start, (size - buf_start) as usize).await?;
            if (b.len() as u64) < size - buf_start {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shorter than its logical size",
                ));
            }
            b.to_vec()
        } else {
            Vec::new()
        };
        Ok(Appender {
            file,
            align,
            state: RefCell::new(State {
                logical: size,
                written: size,
                buf_start,
                buf,
            }),
        })
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

    pub fn append(&self, data: &[u8]) {
        let mut s = self.state.borrow_mut();
        s.buf.extend_from_slice(data);
        s.logical += data.len() as u64;
    }

    /// Writes everything appended so far.
    pub async fn flush(&self) -> io::Result<()> {
        let (start, mut buf, logical) = {
            let mut s = self.state.borrow_mut();
            if s.logical == s.written {
                return Ok(());
            }
            (s.buf_start, std::mem::take(&mut s.buf), s.logical)
        };
        let data_len = buf.len();
        let padded = (data_len as u64).div_ceil(self.align) * self.align;
        buf.resize(padded as usize, 0);
        debug_assert_eq!(start % self.align, 0);
        let res = self.file.write_at(start, &buf).await;
        buf.truncate(data_len);
        let mut s = self.state.borrow_mut();
        if res.is_ok() {
            s.written = logical;
            let new_start = logical / self.align * self.align;
            buf.drain(..(new_start - start) as usize);
            s.buf_start = new_start;
        }
        // Appends made while we were writing (none under the writer lock, but stay correct).
        let extra = std::mem::take(&mut s.buf);
        buf.extend_from_slice(&extra);
        s.buf = buf;
        res
    }
}
