//! Framing: every Kafka request and response is `[length: i32 big-endian][length bytes]`.

use bytes::{Buf, Bytes, BytesMut};

/// Kafka's `socket.request.max.bytes` default: 100 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 100 * 1024 * 1024;

/// Size of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the maximum request size of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("negative frame length {0}")]
    NegativeLength(i32),
}

/// The announced length of the frame at the front of `buffer` (without its prefix), once its length
/// prefix has arrived. The length is checked against `max_bytes` but nothing is reserved for it: the
/// announcement is the peer's claim, so buffers grow only as bytes actually arrive.
pub fn peek_frame_length(buffer: &[u8], max_bytes: usize) -> Result<Option<usize>, FrameError> {
    if buffer.len() < LENGTH_PREFIX_BYTES {
        return Ok(None);
    }
    let length = i32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]);
    if length < 0 {
        return Err(FrameError::NegativeLength(length));
    }
    let length = length as usize;
    if length > max_bytes {
        return Err(FrameError::TooLarge {
            size: length,
            max: max_bytes,
        });
    }
    Ok(Some(length))
}

/// If `buffer` holds a whole frame, splits it off (without its length prefix) and returns it.
/// `Ok(None)` means more bytes are needed. Never reserves the announced size (see [`peek_frame_length`]).
pub fn take_frame(buffer: &mut BytesMut, max_bytes: usize) -> Result<Option<Bytes>, FrameError> {
    let Some(length) = peek_frame_length(buffer, max_bytes)? else {
        return Ok(None);
    };
    if buffer.len() < LENGTH_PREFIX_BYTES + length {
        return Ok(None);
    }
    buffer.advance(LENGTH_PREFIX_BYTES);
    Ok(Some(buffer.split_to(length).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn partial_then_whole_frame() {
        let mut buffer = BytesMut::new();
        buffer.put_i32(5);
        buffer.put_slice(b"he");
        assert_eq!(take_frame(&mut buffer, 100), Ok(None));
        buffer.put_slice(b"llo");
        buffer.put_i32(0);
        assert_eq!(
            take_frame(&mut buffer, 100).unwrap().unwrap(),
            Bytes::from_static(b"hello")
        );
        assert_eq!(take_frame(&mut buffer, 100).unwrap().unwrap(), Bytes::new());
        assert!(buffer.is_empty());
    }

    #[test]
    fn an_announced_length_reserves_nothing() {
        let mut buffer = BytesMut::new();
        buffer.put_i32(90 * 1024 * 1024);
        buffer.put_slice(b"abc");
        let capacity = buffer.capacity();
        assert_eq!(take_frame(&mut buffer, 100 * 1024 * 1024), Ok(None));
        assert_eq!(buffer.capacity(), capacity);
        assert_eq!(
            peek_frame_length(&buffer, 100 * 1024 * 1024),
            Ok(Some(90 * 1024 * 1024))
        );
    }

    #[test]
    fn oversized_and_negative_frames_are_refused() {
        let mut buffer = BytesMut::new();
        buffer.put_i32(101);
        assert_eq!(
            take_frame(&mut buffer, 100),
            Err(FrameError::TooLarge {
                size: 101,
                max: 100
            })
        );
        let mut buffer = BytesMut::new();
        buffer.put_i32(-7);
        assert_eq!(
            take_frame(&mut buffer, 100),
            Err(FrameError::NegativeLength(-7))
        );
    }
}
