//! Transactions in a partition's log: the COMMIT/ABORT markers a transaction coordinator writes
//! (control batches) and what a read_committed reader needs to skip aborted data.
//!
//! # Control batch (Kafka's `EndTransactionMarker`)
//! A magic-2 batch with the transactional and control attributes set, the producer id and epoch of
//! the transaction it ends, base sequence -1, and one record:
//!
//! ```text
//! key:   version i16 (0), type i16 (0 ABORT, 1 COMMIT)            -- ControlRecordType
//! value: version i16 (0), coordinator_epoch i32                   -- EndTxnMarker
//! ```

use crate::types::Offset;
use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// The marker that ends one producer's transaction on a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch of the coordinator (its `__transaction_state` partition's leader epoch) that
    /// wrote it; a marker from an older coordinator epoch is refused (TRANSACTION_COORDINATOR_FENCED).
    pub coordinator_epoch: i32,
    /// COMMIT (true) or ABORT (false).
    pub commit: bool,
}

/// An aborted transaction a read_committed fetch must skip: the producer and the first offset of
/// its data in this partition (Fetch's `aborted_transactions` entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: Offset,
}

/// Control record type ABORT.
pub const CONTROL_TYPE_ABORT: i16 = 0;
/// Control record type COMMIT.
pub const CONTROL_TYPE_COMMIT: i16 = 1;

/// The control batch that writes `marker` (offsets from 0; the log places it).
pub fn marker_batch(marker: &TxnMarker, now_ms: i64) -> Bytes {
    let control_type = if marker.commit {
        CONTROL_TYPE_COMMIT
    } else {
        CONTROL_TYPE_ABORT
    };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&control_type.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: marker.producer_id,
        producer_epoch: marker.producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now_ms,
        key: Some(Bytes::from(key)),
        value: Some(Bytes::from(value)),
        headers: IndexMap::new(),
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, std::iter::once(&record), &options)
        .expect("encoding an uncompressed batch into a growable buffer cannot fail");
    buf.freeze()
}

/// Reads the marker of a control batch (`batch`: the whole batch, header included, as stored):
/// `(commit, coordinator_epoch)`, or `None` if it is not a well-formed transaction marker. Markers
/// are written by the broker itself and are rare, so the record is decoded with kafka-protocol's
/// decoder rather than walked in place.
pub fn parse_marker(batch: &[u8]) -> Option<(bool, i32)> {
    let header = crate::batch::BatchHeader::parse(batch);
    if !header.is_control() || header.records_count != 1 {
        return None;
    }
    let mut bytes = Bytes::copy_from_slice(batch);
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).ok()?;
    let record = set.records.first()?;
    let key = record.key.as_deref()?;
    let value = record.value.as_deref()?;
    if key.len() < 4 || value.len() < 6 {
        return None;
    }
    let control_type = i16::from_be_bytes([key[2], key[3]]);
    let coordinator_epoch = i32::from_be_bytes([value[2], value[3], value[4], value[5]]);
    match control_type {
        CONTROL_TYPE_COMMIT => Some((true, coordinator_epoch)),
        CONTROL_TYPE_ABORT => Some((false, coordinator_epoch)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_batch_reads_back() {
        for commit in [true, false] {
            let marker = TxnMarker {
                producer_id: 42,
                producer_epoch: 3,
                coordinator_epoch: 7,
                commit,
            };
            let batch = marker_batch(&marker, 1_000);
            let header = crate::batch::BatchHeader::parse(&batch);
            assert!(header.is_control() && header.is_transactional());
            assert_eq!((header.producer_id, header.producer_epoch), (42, 3));
            assert_eq!(parse_marker(&batch), Some((commit, 7)));
        }
    }
}
