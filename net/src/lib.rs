//! The Kafka wire: framing, request headers and the per-connection loop.
//!
//! Layout:
//! - [`frame`]: the 4-byte big-endian length prefix, the maximum request size, and frame extraction from a
//!   read buffer (check that a whole frame is buffered, then split it off as `Bytes` without copying).
//! - [`header`]: request-header decoding (via `kafka-protocol`) and response framing.
//! - [`splice`]: response frames as several buffers, so fetched record data is sent from the buffers it
//!   lives in (zero copy) rather than copied into the response.
//! - [`decode_guard`]: decoding request bodies from hostile bytes (element counts cannot reserve memory).
//! - [`budget`]: what connections of one shard share (the request-bytes budget) and what a connection
//!   shares with its idle watchdog.
//! - `read_buffer`: the receive buffer, whose room for the next read is zeroed once and reused.
//! - [`connection`]: one connection's loop: reads frames, dispatches them *in order*, lets their completions
//!   overlap, and writes responses strictly in request order (pipelining).
//!
//! This crate knows nothing of the runtime or of Kafka semantics: the broker passes a [`connection::Service`].
pub mod budget;
pub mod connection;
pub mod decode_guard;
pub mod frame;
pub mod header;
mod read_buffer;
pub mod splice;

pub use budget::{ConnectionActivity, RequestBudget};
pub use connection::{
    serve_connection, CloseConnection, ConnectionError, ConnectionLimits, ConnectionShared,
    DispatchFuture, ResponseFuture, Service, DEFAULT_MAX_QUEUED_RESPONSE_BYTES,
};
pub use decode_guard::{decode_request, DecodeError, GuardedAllocator};
pub use frame::{FrameError, DEFAULT_MAX_REQUEST_BYTES};
pub use header::{decode_header, encode_response, DecodedHeader, HeaderError};
pub use splice::{encode_response_spliced, records_field, Frame};
