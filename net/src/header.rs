//! Request headers and response framing.
//!
//! A request frame is `[api_key i16][api_version i16][correlation_id i32][client_id nullable string]`
//! followed, for flexible versions (header v2), by tagged fields, then the body. The header version
//! depends on the API key and version, which `kafka-protocol` knows. A response is
//! `[length i32][correlation_id i32]` (+ tagged fields for response header v1) + body.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

/// A request header, decoded, with the body still as bytes.
#[derive(Debug)]
pub struct DecodedHeader {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// The peer's address (set by the service that owns the connection; group membership reports it).
    pub client_host: Option<std::net::IpAddr>,
    pub body: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    #[error("unknown API key {api_key} (correlation id {correlation_id})")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    #[error("malformed request header: {0}")]
    Malformed(String),
}

/// The fixed prefix of every request header, readable before the header version is known.
pub fn peek_prefix(frame: &[u8]) -> Result<(i16, i16, i32), HeaderError> {
    if frame.len() < 8 {
        return Err(HeaderError::TooShort(frame.len()));
    }
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    Ok((api_key, api_version, correlation_id))
}

/// Decodes the header of a request frame. The request header version follows from the API key and
/// version; for a version outside what `kafka-protocol` knows the version-0/1 header shape is used
/// (non-flexible), which is what Kafka does for ApiVersions requests it cannot parse.
pub fn decode_header(frame: Bytes) -> Result<DecodedHeader, HeaderError> {
    let (raw_key, api_version, correlation_id) = peek_prefix(&frame)?;
    let api_key = ApiKey::try_from(raw_key).map_err(|_| HeaderError::UnknownApiKey {
        api_key: raw_key,
        correlation_id,
    })?;
    let header_version = if api_key == ApiKey::ApiVersions && !(0..=4).contains(&api_version) {
        // An ApiVersions request newer than we know: read only the non-flexible part of its header.
        1
    } else {
        api_key.request_header_version(api_version)
    };
    let mut buffer = frame;
    let frame_bytes = buffer.len();
    let header = crate::decode_guard::guarded(frame_bytes, || {
        RequestHeader::decode(&mut buffer, header_version)
            .map_err(|error| crate::DecodeError::Malformed(error.to_string()))
    })
    .map_err(|error| HeaderError::Malformed(error.to_string()))?;
    Ok(DecodedHeader {
        api_key,
        api_version,
        correlation_id,
        client_id: header.client_id.map(|id| id.to_string()),
        client_host: None,
        body: buffer,
    })
}

/// Encodes a whole response frame (length prefix, response header, body).
pub fn encode_response<M: Encodable>(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &M,
) -> Result<Bytes, anyhow::Error> {
    let header_version = api_key.response_header_version(api_version);
    encode_response_with_header_version(header_version, api_version, correlation_id, body)
}

/// As [`encode_response`], with an explicit response header version (for the v0 answer to an
/// ApiVersions request of unknown version).
pub fn encode_response_with_header_version<M: Encodable>(
    header_version: i16,
    body_version: i16,
    correlation_id: i32,
    body: &M,
) -> Result<Bytes, anyhow::Error> {
    let header = response_header(correlation_id);
    let size = header.compute_size(header_version)? + body.compute_size(body_version)?;
    let mut buffer = BytesMut::with_capacity(4 + size);
    buffer.put_i32(size as i32);
    header.encode(&mut buffer, header_version)?;
    body.encode(&mut buffer, body_version)?;
    debug_assert_eq!(buffer.len(), 4 + size);
    Ok(buffer.freeze())
}

pub(crate) fn response_header(correlation_id: i32) -> ResponseHeader {
    ResponseHeader::default().with_correlation_id(correlation_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::{encode_request_header_into_buffer, StrBytes};

    fn frame<M: Encodable>(key: ApiKey, version: i16, body: &M) -> Bytes {
        let mut header = RequestHeader::default();
        header.request_api_key = key as i16;
        header.request_api_version = version;
        header.correlation_id = 42;
        header.client_id = Some(StrBytes::from_static_str("test"));
        let mut buffer = BytesMut::new();
        encode_request_header_into_buffer(&mut buffer, &header).unwrap();
        body.encode(&mut buffer, version).unwrap();
        buffer.freeze()
    }

    #[test]
    fn decodes_flexible_and_non_flexible_headers() {
        for version in [0, 9, 12] {
            let decoded = decode_header(frame(
                ApiKey::Metadata,
                version,
                &MetadataRequest::default(),
            ))
            .unwrap();
            assert_eq!(decoded.api_key, ApiKey::Metadata);
            assert_eq!(decoded.api_version, version);
            assert_eq!(decoded.correlation_id, 42);
            assert_eq!(decoded.client_id.as_deref(), Some("test"));
            MetadataRequest::decode(&mut decoded.body.clone(), version).unwrap();
        }
    }

    #[test]
    fn unknown_api_key_is_reported_with_its_correlation_id() {
        let mut buffer = BytesMut::new();
        buffer.put_i16(9999);
        buffer.put_i16(0);
        buffer.put_i32(7);
        buffer.put_i16(-1);
        match decode_header(buffer.freeze()) {
            Err(HeaderError::UnknownApiKey {
                api_key: 9999,
                correlation_id: 7,
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn future_api_versions_request_header_is_readable() {
        let mut bytes =
            BytesMut::from(&frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())[..]);
        bytes[2..4].copy_from_slice(&99i16.to_be_bytes());
        let decoded = decode_header(bytes.freeze()).unwrap();
        assert_eq!(decoded.api_version, 99);
        assert_eq!(decoded.correlation_id, 42);
    }
}
