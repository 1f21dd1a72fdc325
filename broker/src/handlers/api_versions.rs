//! ApiVersions (key 18), versions 0–3.
//!
//! Answers from the handler registry. A request of a version this broker does not know gets a version-0
//! response with UNSUPPORTED_VERSION and the full list, as Kafka does, so the client can retry with a
//! version both sides know. No tagged fields (supported/finalized features) are sent: Kafka leaves them
//! out here too, and old librdkafka (2.0) mis-reads them.

use super::{encode, respond_later, APIS};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 3);

fn supported() -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.api_keys = APIS
        .iter()
        .map(|entry| {
            let mut api = ApiVersion::default();
            api.api_key = entry.key as i16;
            api.min_version = entry.min_version;
            api.max_version = entry.max_version;
            api
        })
        .collect();
    response
}

pub fn handle(_state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    // The body (client software name/version, v3+) is informational; a malformed one must not stop a
    // client from learning our versions, so it is not decoded.
    respond_later(async move { encode(&header, &supported()) })
}

/// The v0-format answer to an ApiVersions request of unknown version.
pub fn unsupported_version(header: DecodedHeader) -> DispatchFuture {
    // Normal client behaviour (kafka-python asks for v4 first): not worth a line per connection.
    tracing::debug!(version = header.api_version, client = ?header.client_id, "ApiVersions of unsupported version; answering in v0");
    respond_later(async move {
        let mut response = supported();
        response.error_code = ResponseError::UnsupportedVersion.code();
        match net::header::encode_response_with_header_version(
            0,
            0,
            header.correlation_id,
            &response,
        ) {
            Ok(frame) => Some(frame),
            Err(error) => {
                tracing::error!(%error, "cannot encode ApiVersions response");
                None
            }
        }
    })
}
