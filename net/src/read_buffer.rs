//! A connection's receive buffer: the bytes read so far, and room for the next read that is zeroed
//! once and then reused.
//!
//! Layout of the one `BytesMut` it holds:
//! ```text
//!  [ filled: bytes received, not yet split off as frames | spare: initialized bytes for the next read ]
//!  ^ front                                                 ^ filled                                    ^ len()
//! ```
//! A stream reads into an initialized `&mut [u8]`, so the offered room has to be written once before
//! the first read into it. Before, every read attempt zeroed the whole offer and truncated it again
//! afterwards: an attempt that found nothing to read (most of them, on a connection that is polled
//! whenever one of its responses completes) still zeroed 4 KiB or more. Here the offer stays in place
//! after the read as `spare`; only room that was actually filled by earlier reads (and so became frame
//! bytes) is replaced by zeros, so zeroing follows the bytes received, not the attempts.
//!
//! Invariant: `filled <= buffer.len()`; bytes past `filled` are never handed out as frame bytes (they
//! hold zeros or stale bytes of this connection's own earlier requests).

use crate::frame::{peek_frame_length, FrameError, LENGTH_PREFIX_BYTES};
use bytes::{Buf, Bytes, BytesMut};

pub(crate) struct ReadBuffer {
    buffer: BytesMut,
    filled: usize,
}

impl ReadBuffer {
    pub(crate) fn with_capacity(capacity: usize) -> ReadBuffer {
        ReadBuffer {
            buffer: BytesMut::with_capacity(capacity),
            filled: 0,
        }
    }

    /// The received bytes not yet taken as frames.
    pub(crate) fn filled(&self) -> &[u8] {
        &self.buffer[..self.filled]
    }

    /// The announced length of the frame at the front, once its prefix has arrived (see
    /// [`peek_frame_length`]).
    pub(crate) fn front_frame_length(&self, max_bytes: usize) -> Result<Option<usize>, FrameError> {
        peek_frame_length(self.filled(), max_bytes)
    }

    /// Splits off the frame at the front (without its length prefix) once all of it has arrived.
    pub(crate) fn take_frame(&mut self, max_bytes: usize) -> Result<Option<Bytes>, FrameError> {
        let Some(length) = self.front_frame_length(max_bytes)? else {
            return Ok(None);
        };
        if self.filled < LENGTH_PREFIX_BYTES + length {
            return Ok(None);
        }
        self.buffer.advance(LENGTH_PREFIX_BYTES);
        self.filled -= LENGTH_PREFIX_BYTES + length;
        Ok(Some(self.buffer.split_to(length).freeze()))
    }

    /// Room for a read of up to `want` bytes, right after the filled bytes. Zeroes only what the spare
    /// room lacks.
    pub(crate) fn unfilled(&mut self, want: usize) -> &mut [u8] {
        let end = self.filled + want;
        if self.buffer.len() < end {
            self.buffer.resize(end, 0);
        }
        &mut self.buffer[self.filled..end]
    }

    /// Marks `read` bytes of the room last returned by [`ReadBuffer::unfilled`] as received.
    pub(crate) fn commit(&mut self, read: usize) {
        assert!(
            self.filled + read <= self.buffer.len(),
            "read past the room offered"
        );
        self.filled += read;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(buffer: &mut ReadBuffer, bytes: &[u8]) {
        let room = buffer.unfilled(bytes.len().max(8));
        room[..bytes.len()].copy_from_slice(bytes);
        buffer.commit(bytes.len());
    }

    #[test]
    fn frames_come_out_whole_and_stale_spare_bytes_never_do() {
        let mut buffer = ReadBuffer::with_capacity(64);
        receive(&mut buffer, &[0, 0, 0, 5, b'h', b'e']);
        assert_eq!(buffer.take_frame(100), Ok(None));
        assert_eq!(buffer.front_frame_length(100), Ok(Some(5)));
        receive(&mut buffer, b"llo");
        assert_eq!(buffer.take_frame(100).unwrap().unwrap(), &b"hello"[..]);
        assert!(buffer.filled().is_empty());
        // A large offer fills the spare with zeros; a short read leaves most of it stale.
        let room = buffer.unfilled(32);
        room.fill(0xEE);
        room[..6].copy_from_slice(&[0, 0, 0, 2, b'o', b'k']);
        buffer.commit(6);
        assert_eq!(buffer.take_frame(100).unwrap().unwrap(), &b"ok"[..]);
        // The stale 0xEE bytes past `filled` are not taken as a length prefix or as frame bytes.
        assert_eq!(buffer.front_frame_length(100), Ok(None));
        assert_eq!(buffer.take_frame(100), Ok(None));
        receive(&mut buffer, &[0, 0, 0, 1, b'x']);
        assert_eq!(buffer.take_frame(100).unwrap().unwrap(), &b"x"[..]);
    }

    #[test]
    fn a_repeated_offer_reuses_the_spare_room() {
        let mut buffer = ReadBuffer::with_capacity(4096);
        buffer.unfilled(4096)[0] = 7;
        // Nothing read: the next offer is the same room, not zeroed again.
        assert_eq!(buffer.unfilled(4096)[0], 7);
        assert_eq!(buffer.buffer.len(), 4096);
    }

    #[test]
    fn an_announced_length_reserves_nothing() {
        let mut buffer = ReadBuffer::with_capacity(64);
        receive(&mut buffer, &[5, 0xA0, 0, 0, b'a', b'b', b'c']);
        let capacity = buffer.buffer.capacity();
        assert_eq!(buffer.take_frame(100 << 20), Ok(None));
        assert_eq!(buffer.front_frame_length(100 << 20), Ok(Some(90 << 20)));
        assert_eq!(buffer.buffer.capacity(), capacity);
    }

    #[test]
    fn errors_of_the_front_frame_are_reported() {
        let mut buffer = ReadBuffer::with_capacity(16);
        receive(&mut buffer, &[0, 0, 1, 0]);
        assert_eq!(
            buffer.take_frame(100),
            Err(FrameError::TooLarge {
                size: 256,
                max: 100
            })
        );
    }
}
