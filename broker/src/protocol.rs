//! Small helpers for Kafka wire types that both the API handlers and the group coordinator use. A leaf
//! module: it imports nothing from this crate, so `group` can use it without importing `handlers`.

use kafka_protocol::protocol::StrBytes;

/// A string as the protocol carries it.
pub fn str_bytes(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}
