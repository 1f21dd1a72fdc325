//! What the group coordinator writes to `__consumer_offsets`: Kafka's own record formats, so the topic
//! reads the same as a Kafka broker's. Every record is keyed; a record with a null value (tombstone)
//! deletes its key. Records are written in ordinary magic-2 batches (uncompressed, no producer id) and
//! replayed in log order on load; the last record of a key wins, as after compaction. A TxnOffsetCommit's
//! offset records are written in a transactional batch carrying the producer's id and epoch: they count
//! only once a COMMIT marker (control batch) of that producer follows them in the partition, and never
//! after an ABORT marker.
//!
//! ```text
//! OffsetCommitKey    (key version 0 or 1): int16 version, string group, string topic, int32 partition
//! OffsetCommitValue  (value version 3):    int16 version, int64 offset, int32 leader_epoch,
//!                                          string metadata, int64 commit_timestamp
//!   (versions 0–2 are read too: v0 offset, metadata, timestamp; v1 adds expire_timestamp after it;
//!    v2 drops it. Version 1 is written, as Kafka does, for a commit with an explicit expire timestamp
//!    — OffsetCommit v2–4 with a retention time — and loses the leader epoch.)
//! GroupMetadataKey   (key version 2):      int16 version, string group
//! GroupMetadataValue (value version 3):    int16 version, string protocol_type, int32 generation,
//!                                          nullable string protocol, nullable string leader,
//!                                          int64 current_state_timestamp,
//!                                          array of members: string member_id,
//!                                            nullable string group_instance_id, string client_id,
//!                                            string client_host, int32 rebalance_timeout,
//!                                            int32 session_timeout, bytes subscription, bytes assignment
//! ```
//!
//! kafka-protocol keeps its primitive codecs private and has no schema for these internal records, so the
//! few primitives they need are here (`put_*` / `Reader`, over `bytes`' checked getters).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// A committed offset as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
    /// The old per-commit expiry (value version 1: OffsetCommit v2–4 with a retention time). When set
    /// it decides expiry instead of `offsets.retention.minutes` (KIP-211).
    pub expire_timestamp: Option<i64>,
}

/// One member as stored in a group's metadata record.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's metadata as stored (written when a generation's assignment is set and when the group
/// becomes empty).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredGroup {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp: i64,
    pub members: Vec<StoredMember>,
}

/// A decoded record of `__consumer_offsets`. `None` values are tombstones.
#[derive(Clone, Debug, PartialEq)]
pub enum GroupRecord {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<CommittedOffset>,
    },
    Group {
        group: String,
        value: Option<StoredGroup>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("malformed __consumer_offsets record: {0}")]
    Malformed(String),
    #[error("unknown __consumer_offsets key version {0}")]
    UnknownKeyVersion(i16),
    #[error("unknown __consumer_offsets value version {0}")]
    UnknownValueVersion(i16),
}

fn malformed(error: impl std::fmt::Display) -> RecordError {
    RecordError::Malformed(error.to_string())
}

impl GroupRecord {
    pub fn key(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            GroupRecord::Offset {
                group,
                topic,
                partition,
                ..
            } => {
                buf.put_i16(1);
                put_string(&mut buf, group);
                put_string(&mut buf, topic);
                buf.put_i32(*partition);
            }
            GroupRecord::Group { group, .. } => {
                buf.put_i16(2);
                put_string(&mut buf, group);
            }
        }
        buf.freeze()
    }

    pub fn value(&self) -> Option<Bytes> {
        let mut buf = BytesMut::new();
        match self {
            GroupRecord::Offset { value: None, .. } | GroupRecord::Group { value: None, .. } => {
                return None
            }
            GroupRecord::Offset {
                value: Some(offset),
                ..
            } => match offset.expire_timestamp {
                Some(expire_timestamp) => {
                    buf.put_i16(1);
                    buf.put_i64(offset.offset);
                    put_string(&mut buf, &offset.metadata);
                    buf.put_i64(offset.commit_timestamp);
                    buf.put_i64(expire_timestamp);
                }
                None => {
                    buf.put_i16(3);
                    buf.put_i64(offset.offset);
                    buf.put_i32(offset.leader_epoch);
                    put_string(&mut buf, &offset.metadata);
                    buf.put_i64(offset.commit_timestamp);
                }
            },
            GroupRecord::Group {
                value: Some(group), ..
            } => encode_group(&mut buf, group),
        }
        Some(buf.freeze())
    }

    pub fn decode(key: &Bytes, value: Option<&Bytes>) -> Result<GroupRecord, RecordError> {
        let mut key = Reader(key.clone());
        let version: i16 = key.i16()?;
        match version {
            0 | 1 => {
                let group: String = key.string()?;
                let topic: String = key.string()?;
                let partition: i32 = key.i32()?;
                let value = value
                    .map(|value| decode_offset(value.clone()))
                    .transpose()?;
                Ok(GroupRecord::Offset {
                    group,
                    topic,
                    partition,
                    value,
                })
            }
            2 => {
                let group: String = key.string()?;
                let value = value.map(|value| decode_group(value.clone())).transpose()?;
                Ok(GroupRecord::Group { group, value })
            }
            other => Err(RecordError::UnknownKeyVersion(other)),
        }
    }
}

fn encode_group(buf: &mut BytesMut, group: &StoredGroup) {
    buf.put_i16(3);
    put_string(buf, &group.protocol_type);
    buf.put_i32(group.generation);
    put_nullable_string(buf, group.protocol.as_deref());
    put_nullable_string(buf, group.leader.as_deref());
    buf.put_i64(group.state_timestamp);
    buf.put_i32(group.members.len() as i32);
    for member in &group.members {
        put_string(buf, &member.member_id);
        put_nullable_string(buf, member.instance_id.as_deref());
        put_string(buf, &member.client_id);
        put_string(buf, &member.client_host);
        buf.put_i32(member.rebalance_timeout_ms);
        buf.put_i32(member.session_timeout_ms);
        put_bytes(buf, &member.subscription);
        put_bytes(buf, &member.assignment);
    }
}

/// Kafka `STRING`: int16 length, UTF-8 bytes (names are far shorter than 32 KiB; longer is cut).
fn put_string(buf: &mut BytesMut, text: &str) {
    put_nullable_string(buf, Some(text));
}

/// Kafka `NULLABLE_STRING`: length -1 for null.
fn put_nullable_string(buf: &mut BytesMut, text: Option<&str>) {
    match text {
        None => buf.put_i16(-1),
        Some(text) => {
            let length = text.len().min(i16::MAX as usize);
            buf.put_i16(length as i16);
            buf.put_slice(&text.as_bytes()[..length]);
        }
    }
}

/// Kafka `BYTES`: int32 length, bytes.
fn put_bytes(buf: &mut BytesMut, bytes: &[u8]) {
    buf.put_i32(bytes.len() as i32);
    buf.put_slice(bytes);
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
    fn i16(&mut self) -> Result<i16, RecordError> {
        self.0.try_get_i16().map_err(malformed)
    }
    fn i32(&mut self) -> Result<i32, RecordError> {
        self.0.try_get_i32().map_err(malformed)
    }
    fn i64(&mut self) -> Result<i64, RecordError> {
        self.0.try_get_i64().map_err(malformed)
    }
    fn nullable_string(&mut self) -> Result<Option<String>, RecordError> {
        let length = self.i16()?;
        if length < 0 {
            return Ok(None);
        }
        self.need(length as usize)?;
        let raw = self.0.split_to(length as usize);
        String::from_utf8(raw.to_vec())
            .map(Some)
            .map_err(|_| malformed("string is not UTF-8"))
    }
    fn string(&mut self) -> Result<String, RecordError> {
        self.nullable_string()?
            .ok_or_else(|| malformed("null where a string is required"))
    }
    fn bytes(&mut self) -> Result<Bytes, RecordError> {
        let length = self.i32()?;
        if length < 0 {
            return Ok(Bytes::new());
        }
        self.need(length as usize)?;
        Ok(self.0.split_to(length as usize))
    }
    fn remaining(&self) -> usize {
        self.0.remaining()
    }
}

fn decode_offset(buf: Bytes) -> Result<CommittedOffset, RecordError> {
    let mut buf = Reader(buf);
    let version: i16 = buf.i16()?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnknownValueVersion(version));
    }
    let offset: i64 = buf.i64()?;
    let leader_epoch: i32 = if version >= 3 { buf.i32()? } else { -1 };
    let metadata: String = buf.string()?;
    let commit_timestamp: i64 = buf.i64()?;
    let expire_timestamp: Option<i64> = if version == 1 {
        Some(buf.i64()?).filter(|&timestamp| timestamp >= 0)
    } else {
        None
    };
    Ok(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
        expire_timestamp,
    })
}

fn decode_group(buf: Bytes) -> Result<StoredGroup, RecordError> {
    let mut buf = Reader(buf);
    let version: i16 = buf.i16()?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnknownValueVersion(version));
    }
    let protocol_type: String = buf.string()?;
    let generation: i32 = buf.i32()?;
    let protocol: Option<String> = buf.nullable_string()?;
    let leader: Option<String> = buf.nullable_string()?;
    let state_timestamp: i64 = if version >= 2 { buf.i64()? } else { -1 };
    let count: i32 = buf.i32()?;
    // Each member takes at least 24 bytes: a count beyond that is corruption, not a reason to allocate.
    if count < 0 || count as usize > buf.remaining() / 24 + 1 {
        return Err(malformed(format!("member count {count}")));
    }
    let mut members = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let member_id: String = buf.string()?;
        let instance_id: Option<String> = if version >= 3 {
            buf.nullable_string()?
        } else {
            None
        };
        let client_id: String = buf.string()?;
        let client_host: String = buf.string()?;
        let rebalance_timeout_ms: i32 = if version >= 1 { buf.i32()? } else { -1 };
        let session_timeout_ms: i32 = buf.i32()?;
        let subscription: Bytes = buf.bytes()?;
        let assignment: Bytes = buf.bytes()?;
        members.push(StoredMember {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms: if rebalance_timeout_ms < 0 {
                session_timeout_ms
            } else {
                rebalance_timeout_ms
            },
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(StoredGroup {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp,
        members,
    })
}

/// One uncompressed magic-2 batch holding `records` (offsets are assigned by the log on append).
pub fn encode_batch(records: &[GroupRecord], now_ms: i64) -> Bytes {
    encode_batch_of(records, None, now_ms)
}

/// The producer a transactional offset commit is written for: its batch carries the producer id and
/// epoch with the transactional attribute (base sequence 0, as Kafka's coordinator writes it; the log
/// checks only the epoch of a coordinator's batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// One transactional batch holding `records` for `producer` (a TxnOffsetCommit's offsets).
pub fn encode_transactional_batch(
    records: &[GroupRecord],
    producer: TxnProducer,
    now_ms: i64,
) -> Bytes {
    encode_batch_of(records, Some(producer), now_ms)
}

fn encode_batch_of(records: &[GroupRecord], producer: Option<TxnProducer>, now_ms: i64) -> Bytes {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(index, record)| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.map_or(-1, |producer| producer.producer_id),
            producer_epoch: producer.map_or(-1, |producer| producer.producer_epoch),
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            sequence: if producer.is_some() { index as i32 } else { -1 },
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

/// Decodes every record of the whole batches in `batch` (as the log returns them). Records without a
/// key, or with a key this broker does not know, are skipped with a log line: a newer format must not
/// stop a coordinator from loading.
pub fn decode_batch(batch: Bytes) -> Result<Vec<GroupRecord>, RecordError> {
    Ok(decode_batch_at(batch)?
        .into_iter()
        .map(|(_, record)| record)
        .collect())
}

/// As [`decode_batch`], each record with its offset in the log (Kafka's `recordOffset`: of two
/// values of one key, the later offset wins).
pub fn decode_batch_at(mut batch: Bytes) -> Result<Vec<(i64, GroupRecord)>, RecordError> {
    let mut out = Vec::new();
    // Bounded: every iteration consumes one batch from `batch`.
    while batch.has_remaining() {
        // kafka-protocol reserves the batch's declared record count up front: decode under the guard.
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
                    "__consumer_offsets record without a key; skipped"
                );
                continue;
            };
            match GroupRecord::decode(&key, record.value.as_ref()) {
                Ok(decoded) => out.push((record.offset, decoded)),
                Err(error @ RecordError::UnknownKeyVersion(_)) => {
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

    #[test]
    fn records_round_trip_through_a_batch() {
        let records = vec![
            GroupRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(CommittedOffset {
                    offset: 42,
                    leader_epoch: 7,
                    metadata: "meta".into(),
                    commit_timestamp: 1234,
                    expire_timestamp: None,
                }),
            },
            GroupRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 5,
                value: Some(CommittedOffset {
                    offset: 43,
                    leader_epoch: -1,
                    metadata: String::new(),
                    commit_timestamp: 1234,
                    expire_timestamp: Some(5678),
                }),
            },
            GroupRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 4,
                value: None,
            },
            GroupRecord::Group {
                group: "g".into(),
                value: Some(StoredGroup {
                    protocol_type: "consumer".into(),
                    generation: 5,
                    protocol: Some("range".into()),
                    leader: Some("m1".into()),
                    state_timestamp: 99,
                    members: vec![StoredMember {
                        member_id: "m1".into(),
                        instance_id: Some("i1".into()),
                        client_id: "c".into(),
                        client_host: "/127.0.0.1".into(),
                        rebalance_timeout_ms: 300_000,
                        session_timeout_ms: 45_000,
                        subscription: Bytes::from_static(b"sub"),
                        assignment: Bytes::from_static(b"assign"),
                    }],
                }),
            },
            GroupRecord::Group {
                group: "h".into(),
                value: None,
            },
        ];
        let batch = encode_batch(&records, 1000);
        storage::batch::validate_batches(&batch, 1 << 20).expect("a valid batch");
        assert_eq!(decode_batch(batch).unwrap(), records);
    }

    #[test]
    fn garbage_values_are_errors_not_panics() {
        let key = GroupRecord::Group {
            group: "g".into(),
            value: None,
        }
        .key();
        for length in 0..40 {
            let value = Bytes::from(vec![0xffu8; length]);
            let _ = GroupRecord::decode(&key, Some(&value));
        }
        let mut huge = BytesMut::new();
        huge.put_i16(3);
        put_string(&mut huge, "consumer");
        huge.put_i32(1);
        put_nullable_string(&mut huge, None);
        put_nullable_string(&mut huge, None);
        huge.put_i64(0);
        huge.put_i32(i32::MAX);
        assert!(GroupRecord::decode(&key, Some(&huge.freeze())).is_err());
    }

    #[test]
    fn keys_are_kafkas_bytes_whatever_the_value() {
        let offset_key = |value: Option<CommittedOffset>| {
            GroupRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 7,
                value,
            }
            .key()
        };
        let committed = CommittedOffset {
            offset: 1,
            leader_epoch: 2,
            metadata: "m".into(),
            commit_timestamp: 3,
            expire_timestamp: None,
        };
        // A value and its tombstone share the key bytes, so compaction replaces one with the other.
        assert_eq!(offset_key(Some(committed)), offset_key(None));
        assert_eq!(
            offset_key(None).as_ref(),
            b"\x00\x01\x00\x01g\x00\x01t\x00\x00\x00\x07".as_slice(),
            "OffsetCommitKey v1: version, group, topic, partition"
        );
        let group_key = GroupRecord::Group {
            group: "g".into(),
            value: None,
        }
        .key();
        assert_eq!(group_key.as_ref(), b"\x00\x02\x00\x01g".as_slice());
    }
}
