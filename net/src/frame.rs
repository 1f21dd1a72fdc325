//! Framing: every Kafka request and response is `[length: i32 big-endian][length bytes]`.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_length_is_known_once_its_prefix_arrived() {
        assert_eq!(peek_frame_length(&[0, 0, 0], 100), Ok(None));
        assert_eq!(peek_frame_length(&[0, 0, 0, 5, b'h'], 100), Ok(Some(5)));
        assert_eq!(peek_frame_length(&[0, 0, 0, 0], 100), Ok(Some(0)));
    }

    #[test]
    fn oversized_and_negative_lengths_are_refused() {
        assert_eq!(
            peek_frame_length(&101i32.to_be_bytes(), 100),
            Err(FrameError::TooLarge {
                size: 101,
                max: 100
            })
        );
        assert_eq!(
            peek_frame_length(&(-7i32).to_be_bytes(), 100),
            Err(FrameError::NegativeLength(-7))
        );
    }
}
