//! What the transaction coordinator writes to `__transaction_state`: Kafka's own record formats, so the
//! topic reads the same as a Kafka broker's. One record per transactional id state change, keyed by the
//! transactional id; a tombstone (null value) removes the id (expiry). Records are written in ordinary
//! magic-2 batches (uncompressed, no producer id) and replayed in log order; the last record of a key
//! wins, as after compaction.
//!
//! ```text
//! TransactionLogKey   (key version 0):   int16 version (0), string transactional_id
//! TransactionLogValue (value version 0): int16 version, int64 producer_id, int16 producer_epoch,
//!                                        int32 transaction_timeout_ms, int8 transaction_status,
//!                                        nullable array of (string topic, array of int32 partition),
//!                                        int64 last_update_timestamp_ms, int64 start_timestamp_ms
//! TransactionLogValue (value version 1, flexible; what Kafka 4.x writes): the same fields with compact
//!                                        strings and arrays (unsigned varint length + 1, 0 = null), a
//!                                        tagged-field section after each partitions entry and at the end:
//!                                        tag 0 previous_producer_id (int64, default -1), tag 1
//!                                        next_producer_id (int64, default -1), tag 2
//!                                        client_transaction_version (int16, default 0); a tag is written
//!                                        only when its value is not the default.
//! ```
//!
//! The partitions are null in state Empty (as Kafka writes them) and read as none there. Status ids are
//! [`TransactionState::id`]. kafka-protocol has no schema for these internal records, so they are encoded
//! here by hand.

use super::state::{TransactionState, Transit, TxnPartition};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use std::collections::{BTreeMap, BTreeSet};

/// The value version this broker writes (Kafka 4.x with transaction version 1 or later).
pub const VALUE_VERSION: i16 = 1;

/// A decoded record of `__transaction_state`: the id's metadata, or None (a tombstone).
#[derive(Clone, Debug, PartialEq)]
pub struct TxnRecord {
    pub transactional_id: String,
    pub value: Option<Transit>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RecordError {
    #[error("malformed __transaction_state record: {0}")]
    Malformed(String),
    #[error("unknown __transaction_state key version {0}")]
    UnknownKeyVersion(i16),
    #[error("unknown __transaction_state value version {0}")]
    UnknownValueVersion(i16),
}

fn malformed(error: impl std::fmt::Display) -> RecordError {
    RecordError::Malformed(error.to_string())
}

impl TxnRecord {
    pub fn key(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(0);
        put_string(&mut buf, &self.transactional_id);
        buf.freeze()
    }

    pub fn value(&self) -> Option<Bytes> {
        self.value
            .as_ref()
            .map(|transit| encode_value(transit, VALUE_VERSION))
    }

    pub fn decode(key: &Bytes, value: Option<&Bytes>) -> Result<TxnRecord, RecordError> {
        let mut key = Reader(key.clone());
        let version = key.i16()?;
        if version != 0 {
            return Err(RecordError::UnknownKeyVersion(version));
        }
        let transactional_id = key.string()?;
        let value = value.map(|value| decode_value(value.clone())).transpose()?;
        Ok(TxnRecord {
            transactional_id,
            value,
        })
    }
}

/// The partitions grouped by topic, as the value stores them.
fn by_topic(partitions: &BTreeSet<TxnPartition>) -> BTreeMap<&str, Vec<i32>> {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        topics.entry(topic).or_default().push(*partition);
    }
    topics
}

/// TransactionLogValue in `version` (0 or 1).
pub fn encode_value(transit: &Transit, version: i16) -> Bytes {
    let flexible = version >= 1;
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    buf.put_i64(transit.producer_id);
    buf.put_i16(transit.producer_epoch);
    buf.put_i32(transit.timeout_ms);
    buf.put_i8(transit.state.id());
    if transit.state == TransactionState::Empty {
        if flexible {
            put_unsigned_varint(&mut buf, 0);
        } else {
            buf.put_i32(-1);
        }
    } else {
        let topics = by_topic(&transit.partitions);
        put_length(&mut buf, topics.len(), flexible);
        for (topic, partitions) in topics {
            if flexible {
                put_unsigned_varint(&mut buf, topic.len() as u32 + 1);
                buf.put_slice(topic.as_bytes());
            } else {
                put_string(&mut buf, topic);
            }
            put_length(&mut buf, partitions.len(), flexible);
            for partition in partitions {
                buf.put_i32(partition);
            }
            if flexible {
                put_unsigned_varint(&mut buf, 0);
            }
        }
    }
    buf.put_i64(transit.last_update_timestamp_ms);
    buf.put_i64(transit.start_timestamp_ms);
    if flexible {
        let mut tagged: Vec<(u32, Vec<u8>)> = Vec::new();
        if transit.last_producer_id != -1 {
            tagged.push((0, transit.last_producer_id.to_be_bytes().to_vec()));
        }
        put_unsigned_varint(&mut buf, tagged.len() as u32);
        for (tag, data) in tagged {
            put_unsigned_varint(&mut buf, tag);
            put_unsigned_varint(&mut buf, data.len() as u32);
            buf.put_slice(&data);
        }
    }
    buf.freeze()
}

/// An array length: int32 (non-flexible) or unsigned varint length + 1 (flexible).
fn put_length(buf: &mut BytesMut, length: usize, flexible: bool) {
    if flexible {
        put_unsigned_varint(buf, length as u32 + 1);
    } else {
        buf.put_i32(length as i32);
    }
}

fn decode_value(buf: Bytes) -> Result<Transit, RecordError> {
    let mut buf = Reader(buf);
    let version = buf.i16()?;
    if !(0..=1).contains(&version) {
        return Err(RecordError::UnknownValueVersion(version));
    }
    let flexible = version >= 1;
    let producer_id = buf.i64()?;
    let producer_epoch = buf.i16()?;
    let timeout_ms = buf.i32()?;
    let status = buf.i8()?;
    let state = TransactionState::from_id(status)
        .ok_or_else(|| malformed(format!("unknown transaction status {status}")))?;
    let mut partitions = BTreeSet::new();
    // None: a null array.
    if let Some(topic_count) = buf.length(flexible)? {
        for _ in 0..topic_count {
            let topic = if flexible {
                buf.compact_string()?
            } else {
                buf.string()?
            };
            let count = buf.length(flexible)?.unwrap_or(0);
            buf.need(count * 4)?;
            for _ in 0..count {
                partitions.insert((topic.clone(), buf.i32()?));
            }
            if flexible {
                buf.skip_tagged_fields()?;
            }
        }
    }
    let last_update_timestamp_ms = buf.i64()?;
    let start_timestamp_ms = buf.i64()?;
    let mut last_producer_id = -1;
    if flexible {
        let count = buf.unsigned_varint()?;
        for _ in 0..count {
            let tag = buf.unsigned_varint()?;
            let size = buf.unsigned_varint()? as usize;
            buf.need(size)?;
            let mut data = buf.0.split_to(size);
            if tag == 0 && size == 8 {
                last_producer_id = data.get_i64();
            }
        }
    }
    if state == TransactionState::Empty {
        partitions.clear();
    }
    Ok(Transit {
        producer_id,
        last_producer_id,
        producer_epoch,
        last_producer_epoch: super::state::NO_PRODUCER_EPOCH,
        timeout_ms,
        state,
        partitions,
        start_timestamp_ms,
        last_update_timestamp_ms,
    })
}

/// Kafka `STRING`: int16 length, UTF-8 bytes (transactional ids and topic names are far shorter than
/// 32 KiB; longer is cut).
fn put_string(buf: &mut BytesMut, text: &str) {
    let length = text.len().min(i16::MAX as usize);
    buf.put_i16(length as i16);
    buf.put_slice(&text.as_bytes()[..length]);
}

fn put_unsigned_varint(buf: &mut BytesMut, mut value: u32) {
    while value >= 0x80 {
        buf.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

/// Reads Kafka primitives from a record key or value, checking every length against what is left.
struct Reader(Bytes);

impl Reader {
    fn need(&self, count: usize) -> Result<(), RecordError> {
        if self.0.remaining() < count {
            return Err(malformed(format!(
                "{count} bytes needed, {} left",
                self.0.remaining()
            )));
        }
        Ok(())
    }
    fn i8(&mut self) -> Result<i8, RecordError> {
        self.0.try_get_i8().map_err(malformed)
    }
    fn i16(&mut self) -> Result<i16, RecordError> {
        self.0.try_get_i16().map_err(malformed)
    }
    fn i32(&mut self) -> Result<i32, RecordError> {
        self.0.try_get_i32().map_err(malformed)
    }
    fn i64(&mut self) -> Result<i64, RecordError> {
        self.0.try_get_i64().map_err(malformed)
    }
    fn unsigned_varint(&mut self) -> Result<u32, RecordError> {
        let mut value: u32 = 0;
        for shift in (0..35).step_by(7) {
            let byte = self.0.try_get_u8().map_err(malformed)?;
            value |= ((byte & 0x7f) as u32) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed("varint longer than 5 bytes"))
    }
    fn bytes_as_string(&mut self, length: usize) -> Result<String, RecordError> {
        self.need(length)?;
        let raw = self.0.split_to(length);
        String::from_utf8(raw.to_vec()).map_err(|_| malformed("string is not UTF-8"))
    }
    fn string(&mut self) -> Result<String, RecordError> {
        let length = self.i16()?;
        if length < 0 {
            return Err(malformed("null where a string is required"));
        }
        self.bytes_as_string(length as usize)
    }
    fn compact_string(&mut self) -> Result<String, RecordError> {
        match self.unsigned_varint()? {
            0 => Err(malformed("null where a string is required")),
            length => self.bytes_as_string(length as usize - 1),
        }
    }
    /// An array's element count (None: null), bounded by the bytes left (each element takes at least
    /// one byte), so corruption never makes a huge allocation.
    fn length(&mut self, flexible: bool) -> Result<Option<usize>, RecordError> {
        let count: i64 = if flexible {
            self.unsigned_varint()? as i64 - 1
        } else {
            self.i32()? as i64
        };
        if count < 0 {
            return Ok(None);
        }
        if count as usize > self.0.remaining() {
            return Err(malformed(format!("array length {count}")));
        }
        Ok(Some(count as usize))
    }
    fn skip_tagged_fields(&mut self) -> Result<(), RecordError> {
        let count = self.unsigned_varint()?;
        for _ in 0..count {
            self.unsigned_varint()?;
            let size = self.unsigned_varint()? as usize;
            self.need(size)?;
            self.0.advance(size);
        }
        Ok(())
    }
}

/// One uncompressed magic-2 batch holding `records` (offsets are assigned by the log on append).
pub fn encode_batch(records: &[TxnRecord], now_ms: i64) -> Bytes {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(index, record)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            sequence: -1,
            timestamp: now_ms,
            key: Some(record.key()),
            value: record.value(),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options)
        .expect("encoding an uncompressed batch into a growable buffer cannot fail");
    buf.freeze()
}

/// Decodes every record of the whole batches in `batch`. Records without a key, or with a key or value
/// version this broker does not know, are skipped with a log line: a newer format must not stop a
/// coordinator from loading.
pub fn decode_batch(mut batch: Bytes) -> Result<Vec<TxnRecord>, RecordError> {
    let mut out = Vec::new();
    // Bounded: every iteration consumes one batch from `batch`.
    while batch.has_remaining() {
        let frame_bytes = batch.len();
        let set = net::decode_guard::guarded(frame_bytes, || {
            RecordBatchDecoder::decode(&mut batch)
                .map_err(|error| net::DecodeError::Malformed(error.to_string()))
        })
        .map_err(malformed)?;
        for record in set.records {
            if record.control {
                continue;
            }
            let Some(key) = record.key else {
                tracing::warn!(
                    offset = record.offset,
                    "__transaction_state record without a key; skipped"
                );
                continue;
            };
            match TxnRecord::decode(&key, record.value.as_ref()) {
                Ok(decoded) => out.push(decoded),
                Err(
                    error @ (RecordError::UnknownKeyVersion(_)
                    | RecordError::UnknownValueVersion(_)),
                ) => {
                    tracing::warn!(offset = record.offset, %error, "skipped");
                }
                Err(error) => return Err(error),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ongoing() -> Transit {
        Transit {
            producer_id: 4000,
            last_producer_id: -1,
            producer_epoch: 3,
            last_producer_epoch: -1,
            timeout_ms: 60_000,
            state: TransactionState::Ongoing,
            partitions: [("orders".to_string(), 0), ("orders".to_string(), 2)]
                .into_iter()
                .chain([("__consumer_offsets".to_string(), 7)])
                .collect(),
            start_timestamp_ms: 1_700_000_000_000,
            last_update_timestamp_ms: 1_700_000_000_500,
        }
    }

    #[test]
    fn records_round_trip_through_a_batch() {
        let records = vec![
            TxnRecord {
                transactional_id: "app-1".into(),
                value: Some(ongoing()),
            },
            TxnRecord {
                transactional_id: "app-2".into(),
                value: Some(Transit {
                    state: TransactionState::Empty,
                    partitions: BTreeSet::new(),
                    last_producer_id: 77,
                    ..ongoing()
                }),
            },
            TxnRecord {
                transactional_id: "app-3".into(),
                value: None,
            },
        ];
        let batch = encode_batch(&records, 1000);
        storage::batch::validate_batches(&batch, 1 << 20).expect("a valid batch");
        assert_eq!(decode_batch(batch).unwrap(), records);
    }

    #[test]
    fn the_bytes_are_kafkas() {
        let record = TxnRecord {
            transactional_id: "t".into(),
            value: Some(Transit {
                partitions: [("a".to_string(), 1)].into_iter().collect(),
                ..ongoing()
            }),
        };
        assert_eq!(record.key().as_ref(), b"\x00\x00\x00\x01t".as_slice());
        // What Kafka's generated TransactionLogValue v1 writer produces for these fields.
        let mut expected = vec![0x00, 0x01];
        expected.extend_from_slice(&4000i64.to_be_bytes());
        expected.extend_from_slice(&3i16.to_be_bytes());
        expected.extend_from_slice(&60_000i32.to_be_bytes());
        expected.push(1); // Ongoing
        expected.push(2); // one topic (compact array: n + 1)
        expected.extend_from_slice(&[2, b'a']); // compact string "a"
        expected.push(2); // one partition
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.push(0); // the entry's tagged fields
        expected.extend_from_slice(&1_700_000_000_500i64.to_be_bytes());
        expected.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        expected.push(0); // no tagged fields at their defaults
        assert_eq!(record.value().unwrap().as_ref(), expected.as_slice());
        // Version 0 (what Kafka before transaction version 1 wrote) reads too.
        let mut old = vec![0x00, 0x00];
        old.extend_from_slice(&4000i64.to_be_bytes());
        old.extend_from_slice(&3i16.to_be_bytes());
        old.extend_from_slice(&60_000i32.to_be_bytes());
        old.push(1);
        old.extend_from_slice(&1i32.to_be_bytes());
        old.extend_from_slice(&[0, 1, b'a']);
        old.extend_from_slice(&1i32.to_be_bytes());
        old.extend_from_slice(&1i32.to_be_bytes());
        old.extend_from_slice(&1_700_000_000_500i64.to_be_bytes());
        old.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        let decoded = TxnRecord::decode(&record.key(), Some(&Bytes::from(old))).unwrap();
        assert_eq!(decoded, record);
        assert_eq!(encode_value(record.value.as_ref().unwrap(), 0), {
            let mut old = vec![0x00, 0x00];
            old.extend_from_slice(&expected[2..17]);
            old.extend_from_slice(&1i32.to_be_bytes());
            old.extend_from_slice(&[0, 1, b'a']);
            old.extend_from_slice(&1i32.to_be_bytes());
            old.extend_from_slice(&1i32.to_be_bytes());
            old.extend_from_slice(&1_700_000_000_500i64.to_be_bytes());
            old.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
            Bytes::from(old)
        });
    }

    #[test]
    fn an_empty_state_writes_null_partitions_and_tagged_fields_are_read() {
        let transit = Transit {
            state: TransactionState::Empty,
            partitions: BTreeSet::new(),
            last_producer_id: 9,
            ..ongoing()
        };
        let value = encode_value(&transit, 1);
        assert_eq!(value[17], 0, "null compact array");
        // tag 0 (previous producer id), size 8, then the id; and an unknown tag 5 is skipped.
        let tail = &value[value.len() - 11..];
        assert_eq!(&tail[..3], &[1, 0, 8]);
        let mut with_unknown_tag = value[..value.len() - 11].to_vec();
        with_unknown_tag.extend_from_slice(&[2, 0, 8]);
        with_unknown_tag.extend_from_slice(&9i64.to_be_bytes());
        with_unknown_tag.extend_from_slice(&[5, 1, 0xff]);
        let key = TxnRecord {
            transactional_id: "t".into(),
            value: None,
        }
        .key();
        let decoded = TxnRecord::decode(&key, Some(&Bytes::from(with_unknown_tag))).unwrap();
        assert_eq!(decoded.value, Some(transit));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let key = TxnRecord {
            transactional_id: "t".into(),
            value: None,
        }
        .key();
        for length in 0..64 {
            for fill in [0x00u8, 0x01, 0x7f, 0xff] {
                let value = Bytes::from(vec![fill; length]);
                let _ = TxnRecord::decode(&key, Some(&value));
                let _ = TxnRecord::decode(&value, None);
            }
        }
        let mut huge = BytesMut::new();
        huge.put_i16(0);
        huge.put_i64(1);
        huge.put_i16(0);
        huge.put_i32(1);
        huge.put_i8(1);
        huge.put_i32(i32::MAX);
        assert!(TxnRecord::decode(&key, Some(&huge.freeze())).is_err());
        assert_eq!(
            TxnRecord::decode(&Bytes::from_static(b"\x00\x07\x00\x01t"), None),
            Err(RecordError::UnknownKeyVersion(7))
        );
    }
}
