//! Requests from this broker to another broker's Kafka port: the client side of the Kafka protocol, for
//! what a cluster asks of the broker leading a partition or a coordinator elsewhere — transaction
//! markers for partitions led by another broker (WriteTxnMarkers), and the verification of a
//! transactional produce whose coordinator is on another broker (AddPartitionsToTxn `verify_only`).
//!
//! [`call`] opens a connection per request: markers and verification are rare next to the data path
//! (once per transaction and partition), and a call that fails leaves nothing behind to recover.
//! Replica fetchers keep a [`Connection`] each (one per shard and leader broker) for their stream of
//! fetches, one request at a time. The peer is another broker of the cluster, but its answer is still
//! bounded: at most `MAX_RESPONSE_BYTES`, within `CALL_TIMEOUT`, decoded by the same codecs the broker
//! serves with.

use crate::metadata::BrokerEndpoint;
use bytes::{Buf, BufMut, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::net::SocketAddr;
use std::time::Duration;
use thiserror::Error;

/// The client id other brokers see in these requests.
pub const CLIENT_ID: &str = "inter-broker";
/// How long one call may take, connection included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest response read.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

#[derive(Debug, Error)]
pub enum CallError {
    #[error("broker {node_id} at {host}:{port}: {source}")]
    Io {
        node_id: i32,
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("broker {0} did not answer within {CALL_TIMEOUT:?}")]
    TimedOut(i32),
    #[error("broker {node_id}'s answer: {reason}")]
    BadResponse { node_id: i32, reason: String },
}

/// Sends `request` (API `key`, `version`) to `broker` on a connection of its own and decodes its
/// answer, all within `CALL_TIMEOUT`.
pub async fn call<Request: Encodable, Response: Decodable>(
    broker: &BrokerEndpoint,
    key: ApiKey,
    version: i16,
    request: &Request,
) -> Result<Response, CallError> {
    let exchange = async {
        let mut connection = Connection::open(broker, MAX_RESPONSE_BYTES).await?;
        connection.exchange(key, version, request).await
    };
    shard::task::timeout(CALL_TIMEOUT, exchange)
        .await
        .unwrap_or(Err(CallError::TimedOut(broker.node_id)))
}

/// A connection to another broker kept for many requests, one at a time (a replica fetcher's). After
/// any error its stream is in an unknown state: the owner drops it and opens another.
pub struct Connection {
    stream: shard::net::TcpStream,
    broker: BrokerEndpoint,
    correlation_id: i32,
    /// Largest answer read.
    response_limit: usize,
}

impl Connection {
    /// Connects to `broker`; answers larger than `response_limit` bytes are refused.
    pub async fn open(
        broker: &BrokerEndpoint,
        response_limit: usize,
    ) -> Result<Connection, CallError> {
        let io = |source| io_error(broker, source);
        let address = resolve(broker).await.map_err(io)?;
        let stream = shard::net::TcpStream::connect(address, CONNECT_TIMEOUT)
            .await
            .map_err(io)?;
        Ok(Connection {
            stream,
            broker: broker.clone(),
            correlation_id: 0,
            response_limit,
        })
    }

    pub fn broker(&self) -> &BrokerEndpoint {
        &self.broker
    }

    /// Sends `request` and decodes its answer within `limit`.
    pub async fn call<Request: Encodable, Response: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Request,
        limit: Duration,
    ) -> Result<Response, CallError> {
        let node_id = self.broker.node_id;
        shard::task::timeout(limit, self.exchange(key, version, request))
            .await
            .unwrap_or(Err(CallError::TimedOut(node_id)))
    }

    async fn exchange<Request: Encodable, Response: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Request,
    ) -> Result<Response, CallError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let correlation_id = self.correlation_id;
        let node_id = self.broker.node_id;
        let bad = |reason: String| CallError::BadResponse { node_id, reason };
        let frame = encode_request(key, version, correlation_id, request)
            .map_err(|reason| bad(format!("cannot encode the request: {reason}")))?;
        let broker = &self.broker;
        let io = |source| io_error(broker, source);
        self.stream.write_all(&frame).await.map_err(io)?;
        self.stream.flush().await.map_err(io)?;
        let mut length = [0u8; 4];
        self.stream.read_exact(&mut length).await.map_err(io)?;
        let length = u32::from_be_bytes(length) as usize;
        if length > self.response_limit {
            let limit = self.response_limit;
            return Err(bad(format!("{length} bytes (at most {limit})")));
        }
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).await.map_err(io)?;
        decode_response(key, version, correlation_id, body).map_err(bad)
    }
}

fn io_error(broker: &BrokerEndpoint, source: std::io::Error) -> CallError {
    CallError::Io {
        node_id: broker.node_id,
        host: broker.host.clone(),
        port: broker.port,
        source,
    }
}

async fn resolve(broker: &BrokerEndpoint) -> std::io::Result<SocketAddr> {
    if let Ok(ip) = broker.host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, broker.port));
    }
    let target = format!("{}:{}", broker.host, broker.port);
    shard::task::spawn_blocking(move || {
        std::net::ToSocketAddrs::to_socket_addrs(&target)?
            .next()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))
    })
    .await
}

/// A request frame: length, header (`correlation_id`, `CLIENT_ID`), body.
fn encode_request<Request: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Request,
) -> Result<BytesMut, String> {
    let mut header = RequestHeader::default();
    header.request_api_key = key as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_static_str(CLIENT_ID));
    let mut frame = BytesMut::new();
    frame.put_u32(0);
    header
        .encode(&mut frame, key.request_header_version(version))
        .map_err(|error| error.to_string())?;
    request
        .encode(&mut frame, version)
        .map_err(|error| error.to_string())?;
    let length = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&length.to_be_bytes());
    Ok(frame)
}

/// The response in `body` (after its length): its header must carry `correlation_id`, and the body
/// must be read whole. Record data in the answer stays in `body` (no copy).
fn decode_response<Response: Decodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: Vec<u8>,
) -> Result<Response, String> {
    let mut buffer = bytes::Bytes::from(body);
    let header = ResponseHeader::decode(&mut buffer, key.response_header_version(version))
        .map_err(|error| error.to_string())?;
    if header.correlation_id != correlation_id {
        return Err(format!("correlation id {}", header.correlation_id));
    }
    let response = Response::decode(&mut buffer, version).map_err(|error| error.to_string())?;
    if buffer.has_remaining() {
        return Err(format!("{} bytes after the response", buffer.remaining()));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

    #[test]
    fn a_request_frame_decodes_as_the_broker_reads_it() {
        let request = WriteTxnMarkersRequest::default();
        let frame = encode_request(ApiKey::WriteTxnMarkers, 1, 1, &request).unwrap();
        let length = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(length, frame.len() - 4);
        let decoded = net::decode_header(frame.freeze().slice(4..)).expect("decodes");
        assert_eq!(decoded.api_key, ApiKey::WriteTxnMarkers);
        assert_eq!((decoded.api_version, decoded.correlation_id), (1, 1));
        assert_eq!(decoded.client_id.as_deref(), Some(CLIENT_ID));
    }

    #[test]
    fn a_response_with_another_correlation_id_or_trailing_bytes_is_refused() {
        let mut header = ResponseHeader::default();
        header.correlation_id = 1;
        let mut body = BytesMut::new();
        let header_version = ApiKey::WriteTxnMarkers.response_header_version(1);
        header.encode(&mut body, header_version).unwrap();
        WriteTxnMarkersResponse::default()
            .encode(&mut body, 1)
            .unwrap();
        assert!(decode_response::<WriteTxnMarkersResponse>(
            ApiKey::WriteTxnMarkers,
            1,
            1,
            body.to_vec()
        )
        .is_ok());
        let mut trailing = body.clone();
        trailing.put_u8(0);
        assert!(decode_response::<WriteTxnMarkersResponse>(
            ApiKey::WriteTxnMarkers,
            1,
            1,
            trailing.to_vec()
        )
        .is_err());
        header.correlation_id = 2;
        let mut other = BytesMut::new();
        header.encode(&mut other, header_version).unwrap();
        WriteTxnMarkersResponse::default()
            .encode(&mut other, 1)
            .unwrap();
        assert!(decode_response::<WriteTxnMarkersResponse>(
            ApiKey::WriteTxnMarkers,
            1,
            1,
            other.to_vec()
        )
        .is_err());
    }
}
