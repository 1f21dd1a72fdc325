//! The records of the metadata log: what an entry's data means once the quorum has committed it.
//!
//! Format (all integers big-endian), one record per Raft entry:
//!
//! ```text
//! frame version: u8 (= 0)
//! record type:   u8 (1 ClusterId, 2 RegisterBroker, 3 FenceBroker, 4 UnfenceBroker, 5 ProducerIds)
//! fields, by type:
//!   ClusterId       cluster_id: string
//!   RegisterBroker  node_id: i32, incarnation: u64, host: string, port: u16, rack: optional string
//!   FenceBroker     node_id: i32, epoch: i64
//!   UnfenceBroker   node_id: i32, epoch: i64
//!   ProducerIds     node_id: i32, first_id: i64, count: i32
//! string:          length u16, then that many UTF-8 bytes
//! optional string: u8 0 (absent) | u8 1, string
//! ```
//!
//! A broker's epoch is the log index of its registration entry (as KRaft's broker epoch is the offset of
//! its registration record), so it is not in the record. Empty entries (Raft's no-op at the start of each
//! term) carry no record. Decoding is bounded by the entry it reads and refuses trailing bytes, unknown
//! types and newer frame versions, so a record from a newer broker is never half understood.

use thiserror::Error;
use uuid::Uuid;

/// The frame version this broker writes and reads.
pub const FRAME_VERSION: u8 = 0;

/// Longest string in a record (host names, racks, cluster ids, topic names, config values).
pub const MAX_STRING_BYTES: usize = 1024;

/// Most records in one batch (a topic of `MAX_PARTITIONS_PER_TOPIC` partitions and its configs fit).
pub const MAX_BATCH_RECORDS: usize = 20_000;

/// Most replicas of one partition, and most config entries of one `Topic` record.
pub const MAX_LIST_LENGTH: usize = 1024;

const CLUSTER_ID: u8 = 1;
const REGISTER_BROKER: u8 = 2;
const FENCE_BROKER: u8 = 3;
const UNFENCE_BROKER: u8 = 4;
const PRODUCER_IDS: u8 = 5;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MetadataRecord {
    /// The cluster's id: the first one committed wins, later ones are ignored.
    ClusterId { cluster_id: String },
    /// A broker (re)registers: its endpoint and rack. `incarnation` is random per process start, so
    /// the broker recognizes its own registration when it is applied.
    RegisterBroker {
        node_id: i32,
        incarnation: u64,
        host: String,
        port: u16,
        rack: Option<String>,
    },
    /// The active controller stopped hearing from the broker registered with `epoch`.
    FenceBroker { node_id: i32, epoch: i64 },
    /// The active controller hears from a fenced broker again.
    UnfenceBroker { node_id: i32, epoch: i64 },
    /// A block of producer ids for one broker's InitProducerId: taken if `first_id` is at or past the
    /// image's next free id (else another block was taken first and this one is ignored).
    ProducerIds {
        node_id: i32,
        first_id: i64,
        count: i32,
    },
    /// A new topic (Kafka's TopicRecord), with no partitions yet and its config overrides. Refused if
    /// its name or id is taken, or its name collides with a topic's once '.' and '_' are alike.
    Topic {
        topic_id: Uuid,
        name: String,
        configs: Vec<(String, String)>,
    },
    /// A topic's next partition (Kafka's PartitionRecord): `partition` must be the topic's partition
    /// count so far (partitions are only added, in order). `leader` is -1 (none) or in `isr`; `isr` is
    /// a subset of `replicas`, which are distinct.
    Partition {
        topic_id: Uuid,
        partition: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
    },
    /// The topic and all its partitions are deleted.
    RemoveTopic { topic_id: Uuid },
    /// Sets (`Some`) or removes (`None`) one dynamic config of a topic (which must exist) or of every
    /// broker (`ConfigTarget::BrokerDefault`).
    Config {
        target: ConfigTarget,
        name: String,
        value: Option<String>,
    },
    /// The topics a broker held before the quorum managed them are in the log: the first one committed
    /// ends the migration, later ones are refused.
    TopicsMigrated,
    /// Records applied together or not at all (a topic and its partitions). Never nested; at most
    /// `MAX_BATCH_RECORDS` records.
    Batch(Vec<MetadataRecord>),
}

/// Whose configs a `Config` record changes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConfigTarget {
    /// The dynamic default of every broker (Kafka's resource name "").
    BrokerDefault,
    /// A topic's override, by topic name.
    Topic(String),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record ends early (needs {needed} more bytes)")]
    Truncated { needed: usize },
    #[error("frame version {0} is newer than this broker's ({FRAME_VERSION})")]
    UnknownVersion(u8),
    #[error("unknown record type {0}")]
    UnknownType(u8),
    #[error("{0} bytes after the record")]
    TrailingBytes(usize),
    #[error("string of {0} bytes (at most {MAX_STRING_BYTES})")]
    StringTooLong(usize),
    #[error("string is not UTF-8")]
    NotUtf8,
    #[error("optional-string flag {0} (0 or 1)")]
    BadFlag(u8),
}

impl MetadataRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(FRAME_VERSION);
        match self {
            MetadataRecord::ClusterId { cluster_id } => {
                out.push(CLUSTER_ID);
                put_string(&mut out, cluster_id);
            }
            MetadataRecord::RegisterBroker {
                node_id,
                incarnation,
                host,
                port,
                rack,
            } => {
                out.push(REGISTER_BROKER);
                out.extend_from_slice(&node_id.to_be_bytes());
                out.extend_from_slice(&incarnation.to_be_bytes());
                put_string(&mut out, host);
                out.extend_from_slice(&port.to_be_bytes());
                match rack {
                    None => out.push(0),
                    Some(rack) => {
                        out.push(1);
                        put_string(&mut out, rack);
                    }
                }
            }
            MetadataRecord::FenceBroker { node_id, epoch }
            | MetadataRecord::UnfenceBroker { node_id, epoch } => {
                out.push(if matches!(self, MetadataRecord::FenceBroker { .. }) {
                    FENCE_BROKER
                } else {
                    UNFENCE_BROKER
                });
                out.extend_from_slice(&node_id.to_be_bytes());
                out.extend_from_slice(&epoch.to_be_bytes());
            }
            MetadataRecord::ProducerIds {
                node_id,
                first_id,
                count,
            } => {
                out.push(PRODUCER_IDS);
                out.extend_from_slice(&node_id.to_be_bytes());
                out.extend_from_slice(&first_id.to_be_bytes());
                out.extend_from_slice(&count.to_be_bytes());
            }
            _ => todo!("topic records"),
        }
        out
    }

    /// The record in `data` (one entry's data).
    pub fn decode(data: &[u8]) -> Result<MetadataRecord, RecordError> {
        let mut reader = Reader { data };
        let version = reader.u8()?;
        if version > FRAME_VERSION {
            return Err(RecordError::UnknownVersion(version));
        }
        let record = match reader.u8()? {
            CLUSTER_ID => MetadataRecord::ClusterId {
                cluster_id: reader.string()?,
            },
            REGISTER_BROKER => MetadataRecord::RegisterBroker {
                node_id: i32::from_be_bytes(reader.array()?),
                incarnation: u64::from_be_bytes(reader.array()?),
                host: reader.string()?,
                port: u16::from_be_bytes(reader.array()?),
                rack: match reader.u8()? {
                    0 => None,
                    1 => Some(reader.string()?),
                    flag => return Err(RecordError::BadFlag(flag)),
                },
            },
            kind @ (FENCE_BROKER | UNFENCE_BROKER) => {
                let node_id = i32::from_be_bytes(reader.array()?);
                let epoch = i64::from_be_bytes(reader.array()?);
                if kind == FENCE_BROKER {
                    MetadataRecord::FenceBroker { node_id, epoch }
                } else {
                    MetadataRecord::UnfenceBroker { node_id, epoch }
                }
            }
            PRODUCER_IDS => MetadataRecord::ProducerIds {
                node_id: i32::from_be_bytes(reader.array()?),
                first_id: i64::from_be_bytes(reader.array()?),
                count: i32::from_be_bytes(reader.array()?),
            },
            other => return Err(RecordError::UnknownType(other)),
        };
        if !reader.data.is_empty() {
            return Err(RecordError::TrailingBytes(reader.data.len()));
        }
        Ok(record)
    }
}

fn put_string(out: &mut Vec<u8>, text: &str) {
    // Writers hold strings to MAX_STRING_BYTES (configuration validation); a longer one is cut at a
    // character boundary rather than written unreadable.
    let mut end = text.len().min(MAX_STRING_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&text.as_bytes()[..end]);
}

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], RecordError> {
        if self.data.len() < count {
            return Err(RecordError::Truncated {
                needed: count - self.data.len(),
            });
        }
        let (taken, rest) = self.data.split_at(count);
        self.data = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }

    fn string(&mut self) -> Result<String, RecordError> {
        let length = u16::from_be_bytes(self.array()?) as usize;
        if length > MAX_STRING_BYTES {
            return Err(RecordError::StringTooLong(length));
        }
        String::from_utf8(self.take(length)?.to_vec()).map_err(|_| RecordError::NotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<MetadataRecord> {
        vec![
            MetadataRecord::ClusterId {
                cluster_id: "q1Xk9-abc_DEF".into(),
            },
            MetadataRecord::RegisterBroker {
                node_id: 3,
                incarnation: u64::MAX - 7,
                host: "broker-3.example".into(),
                port: 9092,
                rack: Some("rack-a".into()),
            },
            MetadataRecord::RegisterBroker {
                node_id: 0,
                incarnation: 1,
                host: "127.0.0.1".into(),
                port: 1,
                rack: None,
            },
            MetadataRecord::FenceBroker {
                node_id: 2,
                epoch: 17,
            },
            MetadataRecord::UnfenceBroker {
                node_id: 2,
                epoch: 17,
            },
            MetadataRecord::ProducerIds {
                node_id: 1,
                first_id: 4000,
                count: 1000,
            },
        ]
    }

    #[test]
    fn every_record_round_trips() {
        for record in samples() {
            assert_eq!(MetadataRecord::decode(&record.encode()), Ok(record));
        }
    }

    #[test]
    fn every_cut_short_record_is_refused() {
        for record in samples() {
            let bytes = record.encode();
            for length in 0..bytes.len() {
                assert!(
                    MetadataRecord::decode(&bytes[..length]).is_err(),
                    "{record:?} cut to {length} bytes decoded"
                );
            }
        }
    }

    #[test]
    fn newer_versions_unknown_types_and_trailing_bytes_are_refused() {
        let mut bytes = samples()[0].encode();
        bytes[0] = FRAME_VERSION + 1;
        assert_eq!(
            MetadataRecord::decode(&bytes),
            Err(RecordError::UnknownVersion(FRAME_VERSION + 1))
        );
        assert_eq!(
            MetadataRecord::decode(&[FRAME_VERSION, 99]),
            Err(RecordError::UnknownType(99))
        );
        let mut bytes = samples()[3].encode();
        bytes.push(0);
        assert_eq!(
            MetadataRecord::decode(&bytes),
            Err(RecordError::TrailingBytes(1))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = MetadataRecord::decode(&data);
        }

        #[test]
        fn registrations_round_trip(node_id in 0..i32::MAX, incarnation: u64, host in "[a-z0-9.-]{1,40}",
                                    port: u16, rack in proptest::option::of("[a-z0-9-]{1,20}")) {
            let record = MetadataRecord::RegisterBroker { node_id, incarnation, host, port, rack };
            prop_assert_eq!(MetadataRecord::decode(&record.encode()), Ok(record));
        }
    }
}
