//! Zero-copy response encoding: record data goes out in the buffers it already lives in.
//!
//! `kafka-protocol` encodes a records field (`Option<Bytes>`) by copying it into the output buffer. To
//! avoid that copy for fetch responses, the caller puts a *placeholder* in each records field — a slice
//! of [`PLACEHOLDER`] with the length of the real data — and passes the real data (one or more `Bytes`
//! per field, in encoding order) alongside. [`SplicingBuf`] recognizes the placeholder by its address
//! when the encoder writes it, and instead of copying, ends the current part and inserts the real
//! buffers as parts of their own. Small buffers are still copied (a separate write is dearer than a
//! small copy). The resulting [`Frame`] is written part after part.

use crate::header::response_header;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;
use std::collections::VecDeque;

/// Zeros that are never read: placeholders point into it, and are recognized by their address.
/// (In .bss: costs no memory until touched, and nothing touches it.)
static PLACEHOLDER_SPACE: [u8; PLACEHOLDER_MAX_BYTES] = [0; PLACEHOLDER_MAX_BYTES];

/// Longest records field that can be spliced; longer ones are joined into one buffer (copied).
pub const PLACEHOLDER_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Buffers shorter than this are copied into the frame rather than sent as parts of their own.
pub const SPLICE_MIN_BYTES: usize = 16 * 1024;

/// A response frame as buffers to write back to back.
#[derive(Debug, Default)]
pub struct Frame {
    pub parts: Vec<Bytes>,
}

impl Frame {
    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Bytes> for Frame {
    fn from(bytes: Bytes) -> Frame {
        Frame { parts: vec![bytes] }
    }
}

/// The value to put in a records field whose data is `buffers`: a placeholder of the same length, or —
/// when the data is too long for one — the buffers joined (then nothing is spliced for this field).
pub fn records_field(buffers: Vec<Bytes>, splices: &mut VecDeque<Vec<Bytes>>) -> Bytes {
    let length: usize = buffers.iter().map(Bytes::len).sum();
    match buffers.len() {
        0 => Bytes::new(),
        _ if length > PLACEHOLDER_MAX_BYTES => {
            let mut joined = BytesMut::with_capacity(length);
            for buffer in buffers {
                joined.extend_from_slice(&buffer);
            }
            joined.freeze()
        }
        _ => {
            splices.push_back(buffers);
            Bytes::from_static(&PLACEHOLDER_SPACE[..length])
        }
    }
}

/// Encodes a whole response frame (length prefix, header, body), splicing `splices` in for the
/// placeholders made by [`records_field`], in the order the encoder meets them.
pub fn encode_response_spliced<M: Encodable>(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &M,
    splices: VecDeque<Vec<Bytes>>,
) -> Result<Frame, anyhow::Error> {
    let header_version = api_key.response_header_version(api_version);
    let header = response_header(correlation_id);
    let size = header.compute_size(header_version)? + body.compute_size(api_version)?;
    let mut buffer = SplicingBuf {
        current: BytesMut::with_capacity(4 + size.min(64 * 1024)),
        parts: Vec::new(),
        emitted: 0,
        splices,
    };
    buffer.put_i32(size as i32);
    header.encode(&mut buffer, header_version)?;
    body.encode(&mut buffer, api_version)?;
    anyhow::ensure!(
        buffer.splices.is_empty(),
        "{} record splices were not met by the encoder",
        buffer.splices.len()
    );
    let frame = buffer.finish();
    debug_assert_eq!(frame.len(), 4 + size);
    Ok(frame)
}

/// A `BufMut` that ends up as a [`Frame`]; see the module documentation.
struct SplicingBuf {
    current: BytesMut,
    parts: Vec<Bytes>,
    /// Bytes in `parts`.
    emitted: usize,
    splices: VecDeque<Vec<Bytes>>,
}

impl SplicingBuf {
    fn finish(mut self) -> Frame {
        if !self.current.is_empty() {
            self.parts.push(self.current.split().freeze());
        }
        Frame { parts: self.parts }
    }

    fn is_placeholder(source: &[u8]) -> bool {
        !source.is_empty() && std::ptr::eq(source.as_ptr(), PLACEHOLDER_SPACE.as_ptr())
    }
}

// SAFETY: every method delegates to the inner BytesMut, which upholds BufMut's contract.
unsafe impl BufMut for SplicingBuf {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, count: usize) {
        // SAFETY: forwarded; the caller initialized `count` bytes of `chunk_mut`.
        unsafe { self.current.advance_mut(count) }
    }

    fn chunk_mut(&mut self) -> &mut bytes::buf::UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, source: &[u8]) {
        if !Self::is_placeholder(source) {
            self.current.extend_from_slice(source);
            return;
        }
        let buffers = self
            .splices
            .pop_front()
            .expect("a splice for every placeholder");
        assert_eq!(
            buffers.iter().map(Bytes::len).sum::<usize>(),
            source.len(),
            "splice length differs from its placeholder"
        );
        for buffer in buffers {
            if buffer.len() < SPLICE_MIN_BYTES {
                self.current.extend_from_slice(&buffer);
                continue;
            }
            if !self.current.is_empty() {
                let part = self.current.split().freeze();
                self.emitted += part.len();
                self.parts.push(part);
            }
            self.emitted += buffer.len();
            self.parts.push(buffer);
        }
    }
}

impl ByteBufMut for SplicingBuf {
    fn offset(&self) -> usize {
        self.emitted + self.current.len()
    }

    /// Gaps (sizes written after their contents) may only reach back into the part being built.
    fn seek(&mut self, offset: usize) {
        assert!(offset >= self.emitted, "seek back past a spliced part");
        self.current.resize(offset - self.emitted, 0);
    }

    fn range(&mut self, range: std::ops::Range<usize>) -> &mut [u8] {
        assert!(
            range.start >= self.emitted,
            "range reaches back past a spliced part"
        );
        &mut self.current[range.start - self.emitted..range.end - self.emitted]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::FetchResponse;

    fn response(records: Vec<Bytes>) -> FetchResponse {
        let mut response = FetchResponse::default();
        response.responses = records
            .into_iter()
            .enumerate()
            .map(|(index, records)| {
                let mut partition = PartitionData::default();
                partition.partition_index = index as i32;
                partition.records = Some(records);
                let mut topic = FetchableTopicResponse::default();
                topic.partitions = vec![partition];
                topic
            })
            .collect();
        response
    }

    #[test]
    fn spliced_frame_equals_the_copied_one() {
        let big = |fill: u8| Bytes::from(vec![fill; 40 * 1024]);
        let data = [
            vec![big(1), Bytes::from_static(b"small"), big(2)],
            vec![],
            vec![big(3)],
        ];
        for version in [4, 12, 16] {
            let joined: Vec<Bytes> = data
                .iter()
                .map(|buffers| Bytes::from(buffers.concat()))
                .collect();
            let copied =
                crate::header::encode_response(ApiKey::Fetch, version, 9, &response(joined))
                    .unwrap();
            let mut splices = VecDeque::new();
            let placeholders: Vec<Bytes> = data
                .iter()
                .map(|buffers| records_field(buffers.clone(), &mut splices))
                .collect();
            let frame = encode_response_spliced(
                ApiKey::Fetch,
                version,
                9,
                &response(placeholders),
                splices,
            )
            .unwrap();
            let flattened: Vec<u8> = frame
                .parts
                .iter()
                .flat_map(|part| part.iter().copied())
                .collect();
            assert_eq!(&flattened[..], &copied[..], "version {version}");
            // The big buffers went out as they were: same memory, no copy.
            for buffer in data
                .iter()
                .flatten()
                .filter(|b| b.len() >= SPLICE_MIN_BYTES)
            {
                assert!(
                    frame
                        .parts
                        .iter()
                        .any(|part| part.as_ptr() == buffer.as_ptr()),
                    "buffer was copied"
                );
            }
        }
    }
}
