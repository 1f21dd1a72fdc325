//! The records of the metadata log: what an entry's data means once the quorum has committed it.
//!
//! Format (all integers big-endian), one record per Raft entry:
//!
//! ```text
//! frame version: u8 (= 0)
//! record type:   u8 (1 ClusterId, 2 RegisterBroker, 3 FenceBroker, 4 UnfenceBroker, 5 ProducerIds,
//!                     6 Topic, 7 Partition, 8 RemoveTopic, 9 Config, 10 TopicsMigrated, 11 Batch,
//!                     12 AlterPartition, 13 ElectLeader, 14 Reassign)
//! fields, by type:
//!   ClusterId       cluster_id: string
//!   RegisterBroker  node_id: i32, incarnation: u64, host: string, port: u16, rack: optional string
//!   FenceBroker     node_id: i32, epoch: i64
//!   UnfenceBroker   node_id: i32, epoch: i64
//!   ProducerIds     node_id: i32, first_id: i64, count: i32
//!   Topic           topic_id: uuid, name: string, configs: list of (name: string, value: string)
//!   Partition       topic_id: uuid, partition: i32, replicas: list of i32, isr: list of i32,
//!                   leader: i32, leader_epoch: i32, partition_epoch: i32
//!   RemoveTopic     topic_id: uuid
//!   Config          target: u8 0 (BrokerDefault) | u8 1, topic name: string;
//!                   name: string, value: optional string (absent: the config is removed)
//!   TopicsMigrated  (no fields)
//!   AlterPartition  topic_id: uuid, partition: i32, leader: i32, leader_epoch: i32,
//!                   partition_epoch: i32, isr: list of i32
//!   ElectLeader     topic_id: uuid, partition: i32, partition_epoch: i32,
//!                   election: u8 (0 preferred, 1 unclean)
//!   Reassign        topic_id: uuid, partition: i32,
//!                   target: u8 0 (cancel) | u8 1, list of i32 (the replicas to move to)
//!   Batch           count: u32 (at most MAX_BATCH_RECORDS), then count times:
//!                   length: u32, that many bytes: a whole record (frame version byte included),
//!                   never itself a Batch
//! string:          length u16 (at most MAX_STRING_BYTES), then that many UTF-8 bytes
//! optional string: u8 0 (absent) | u8 1, string
//! uuid:            16 bytes
//! list:            count u16 (at most MAX_LIST_LENGTH), then that many items
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
pub const MAX_STRING_BYTES: usize = 16 * 1024;

/// Most records in one batch (a topic of `MAX_PARTITIONS_PER_TOPIC` partitions and its configs fit).
pub const MAX_BATCH_RECORDS: usize = 20_000;

/// Most replicas of one partition, and most config entries of one `Topic` record.
pub const MAX_LIST_LENGTH: usize = 1024;

const CLUSTER_ID: u8 = 1;
const REGISTER_BROKER: u8 = 2;
const FENCE_BROKER: u8 = 3;
const UNFENCE_BROKER: u8 = 4;
const PRODUCER_IDS: u8 = 5;
const TOPIC: u8 = 6;
const PARTITION: u8 = 7;
const REMOVE_TOPIC: u8 = 8;
const CONFIG: u8 = 9;
const TOPICS_MIGRATED: u8 = 10;
const BATCH: u8 = 11;
const ALTER_PARTITION: u8 = 12;
const ELECT_LEADER: u8 = 13;
const REASSIGN: u8 = 14;

/// Most records a batch's decoding reserves room for up front (its count is untrusted until read).
const BATCH_PREALLOCATION: usize = 64;

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
    /// A partition's leader changes its ISR (Kafka's AlterPartition, as a PartitionChangeRecord):
    /// applied only if `leader`, `leader_epoch` and `partition_epoch` are the partition's current ones
    /// (a leader deposed meanwhile, or a change made since, makes it stale), the new ISR holds the
    /// leader and only replicas, and every member it adds is a live broker. Bumps the partition epoch.
    AlterPartition {
        topic_id: Uuid,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
    /// A partition's leader is elected anew (Kafka's ElectLeaders, as a PartitionChangeRecord with a
    /// leader): applied only if the election is due when applied (see `quorum::partition_changes`);
    /// `partition_epoch` is the one it was proposed at (it tells two proposals apart). Moves both
    /// epochs.
    ElectLeader {
        topic_id: Uuid,
        partition: i32,
        partition_epoch: i32,
        election: Election,
    },
    /// A partition's replicas move to `target` (Kafka's AlterPartitionReassignments; `None` cancels
    /// the ongoing reassignment). The target's new members join as followers and the reassignment
    /// completes once all of the target is in the ISR (see `quorum::partition_changes`).
    Reassign {
        topic_id: Uuid,
        partition: i32,
        target: Option<Vec<i32>>,
    },
    /// Records applied together or not at all (a topic and its partitions). Never nested; at most
    /// `MAX_BATCH_RECORDS` records.
    Batch(Vec<MetadataRecord>),
}

/// Which leader an `ElectLeader` record elects (Kafka's ElectionType).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Election {
    /// The first replica (the preferred leader), if it is a live member of the ISR and not leading.
    Preferred,
    /// A partition without a leader gets a live ISR member, else a live replica out of sync.
    Unclean,
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
    #[error("config target {0} (0 broker default or 1 topic)")]
    BadConfigTarget(u8),
    #[error("list of {0} items (at most {MAX_LIST_LENGTH})")]
    ListTooLong(usize),
    #[error("batch of {0} records (at most {MAX_BATCH_RECORDS})")]
    BatchTooLong(usize),
    #[error("a batch inside a batch")]
    NestedBatch,
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
                put_optional_string(&mut out, rack.as_deref());
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
            MetadataRecord::Topic {
                topic_id,
                name,
                configs,
            } => {
                out.push(TOPIC);
                out.extend_from_slice(topic_id.as_bytes());
                put_string(&mut out, name);
                put_list(&mut out, configs, |out, (name, value)| {
                    put_string(out, name);
                    put_string(out, value);
                });
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
            } => {
                out.push(PARTITION);
                out.extend_from_slice(topic_id.as_bytes());
                out.extend_from_slice(&partition.to_be_bytes());
                put_list(&mut out, replicas, |out, id| {
                    out.extend_from_slice(&id.to_be_bytes())
                });
                put_list(&mut out, isr, |out, id| {
                    out.extend_from_slice(&id.to_be_bytes())
                });
                out.extend_from_slice(&leader.to_be_bytes());
                out.extend_from_slice(&leader_epoch.to_be_bytes());
                out.extend_from_slice(&partition_epoch.to_be_bytes());
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                out.push(REMOVE_TOPIC);
                out.extend_from_slice(topic_id.as_bytes());
            }
            MetadataRecord::Config {
                target,
                name,
                value,
            } => {
                out.push(CONFIG);
                match target {
                    ConfigTarget::BrokerDefault => out.push(0),
                    ConfigTarget::Topic(topic) => {
                        out.push(1);
                        put_string(&mut out, topic);
                    }
                }
                put_string(&mut out, name);
                put_optional_string(&mut out, value.as_deref());
            }
            MetadataRecord::TopicsMigrated => out.push(TOPICS_MIGRATED),
            MetadataRecord::AlterPartition {
                topic_id,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                isr,
            } => {
                out.push(ALTER_PARTITION);
                out.extend_from_slice(topic_id.as_bytes());
                for number in [partition, leader, leader_epoch, partition_epoch] {
                    out.extend_from_slice(&number.to_be_bytes());
                }
                put_list(&mut out, isr, |out, id| {
                    out.extend_from_slice(&id.to_be_bytes())
                });
            }
            MetadataRecord::ElectLeader {
                topic_id,
                partition,
                partition_epoch,
                election,
            } => {
                out.push(ELECT_LEADER);
                out.extend_from_slice(topic_id.as_bytes());
                out.extend_from_slice(&partition.to_be_bytes());
                out.extend_from_slice(&partition_epoch.to_be_bytes());
                out.push(match election {
                    Election::Preferred => 0,
                    Election::Unclean => 1,
                });
            }
            MetadataRecord::Reassign {
                topic_id,
                partition,
                target,
            } => {
                out.push(REASSIGN);
                out.extend_from_slice(topic_id.as_bytes());
                out.extend_from_slice(&partition.to_be_bytes());
                match target {
                    None => out.push(0),
                    Some(target) => {
                        out.push(1);
                        put_list(&mut out, target, |out, id| {
                            out.extend_from_slice(&id.to_be_bytes())
                        });
                    }
                }
            }
            MetadataRecord::Batch(records) => {
                // Writers keep batches flat and within MAX_BATCH_RECORDS (decoding refuses others).
                debug_assert!(records.len() <= MAX_BATCH_RECORDS, "batch too long");
                out.push(BATCH);
                out.extend_from_slice(&(records.len() as u32).to_be_bytes());
                for record in records {
                    debug_assert!(
                        !matches!(record, MetadataRecord::Batch(_)),
                        "a batch inside a batch"
                    );
                    let encoded = record.encode();
                    out.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
                    out.extend_from_slice(&encoded);
                }
            }
        }
        out
    }

    /// The record in `data` (one entry's data).
    pub fn decode(data: &[u8]) -> Result<MetadataRecord, RecordError> {
        Self::decode_within(data, false)
    }

    /// The record in `data`; `in_batch`: a record of a batch, which may not be a batch itself (refused
    /// before it is read, so nesting cannot recurse).
    fn decode_within(data: &[u8], in_batch: bool) -> Result<MetadataRecord, RecordError> {
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
                rack: reader.optional_string()?,
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
            TOPIC => MetadataRecord::Topic {
                topic_id: reader.uuid()?,
                name: reader.string()?,
                configs: reader.list(|reader| Ok((reader.string()?, reader.string()?)))?,
            },
            PARTITION => MetadataRecord::Partition {
                topic_id: reader.uuid()?,
                partition: reader.i32()?,
                replicas: reader.list(Reader::i32)?,
                isr: reader.list(Reader::i32)?,
                leader: reader.i32()?,
                leader_epoch: reader.i32()?,
                partition_epoch: reader.i32()?,
            },
            REMOVE_TOPIC => MetadataRecord::RemoveTopic {
                topic_id: reader.uuid()?,
            },
            CONFIG => MetadataRecord::Config {
                target: match reader.u8()? {
                    0 => ConfigTarget::BrokerDefault,
                    1 => ConfigTarget::Topic(reader.string()?),
                    other => return Err(RecordError::BadConfigTarget(other)),
                },
                name: reader.string()?,
                value: reader.optional_string()?,
            },
            TOPICS_MIGRATED => MetadataRecord::TopicsMigrated,
            ALTER_PARTITION => MetadataRecord::AlterPartition {
                topic_id: reader.uuid()?,
                partition: reader.i32()?,
                leader: reader.i32()?,
                leader_epoch: reader.i32()?,
                partition_epoch: reader.i32()?,
                isr: reader.list(Reader::i32)?,
            },
            ELECT_LEADER => MetadataRecord::ElectLeader {
                topic_id: reader.uuid()?,
                partition: reader.i32()?,
                partition_epoch: reader.i32()?,
                election: match reader.u8()? {
                    0 => Election::Preferred,
                    1 => Election::Unclean,
                    other => return Err(RecordError::BadFlag(other)),
                },
            },
            REASSIGN => MetadataRecord::Reassign {
                topic_id: reader.uuid()?,
                partition: reader.i32()?,
                target: match reader.u8()? {
                    0 => None,
                    1 => Some(reader.list(Reader::i32)?),
                    other => return Err(RecordError::BadFlag(other)),
                },
            },
            BATCH if in_batch => return Err(RecordError::NestedBatch),
            BATCH => {
                let count = u32::from_be_bytes(reader.array()?) as usize;
                if count > MAX_BATCH_RECORDS {
                    return Err(RecordError::BatchTooLong(count));
                }
                let mut records = Vec::with_capacity(count.min(BATCH_PREALLOCATION));
                for _ in 0..count {
                    let length = u32::from_be_bytes(reader.array()?) as usize;
                    records.push(Self::decode_within(reader.take(length)?, true)?);
                }
                MetadataRecord::Batch(records)
            }
            other => return Err(RecordError::UnknownType(other)),
        };
        if !reader.data.is_empty() {
            return Err(RecordError::TrailingBytes(reader.data.len()));
        }
        Ok(record)
    }
}

pub(super) fn put_string(out: &mut Vec<u8>, text: &str) {
    // Writers hold strings to MAX_STRING_BYTES (configuration validation); a longer one is cut at a
    // character boundary rather than written unreadable.
    let mut end = text.len().min(MAX_STRING_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&text.as_bytes()[..end]);
}

pub(super) fn put_optional_string(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        None => out.push(0),
        Some(text) => {
            out.push(1);
            put_string(out, text);
        }
    }
}

pub(super) fn put_list<T>(out: &mut Vec<u8>, items: &[T], mut put: impl FnMut(&mut Vec<u8>, &T)) {
    // Writers hold lists to MAX_LIST_LENGTH (replication factor and config validation); like a long
    // string, a longer one is cut rather than written unreadable.
    debug_assert!(items.len() <= MAX_LIST_LENGTH, "list too long");
    let items = &items[..items.len().min(MAX_LIST_LENGTH)];
    out.extend_from_slice(&(items.len() as u16).to_be_bytes());
    for item in items {
        put(out, item);
    }
}

pub(super) struct Reader<'a> {
    pub(super) data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, count: usize) -> Result<&'a [u8], RecordError> {
        if self.data.len() < count {
            return Err(RecordError::Truncated {
                needed: count - self.data.len(),
            });
        }
        let (taken, rest) = self.data.split_at(count);
        self.data = rest;
        Ok(taken)
    }

    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    pub(super) fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn string(&mut self) -> Result<String, RecordError> {
        let length = u16::from_be_bytes(self.array()?) as usize;
        if length > MAX_STRING_BYTES {
            return Err(RecordError::StringTooLong(length));
        }
        String::from_utf8(self.take(length)?.to_vec()).map_err(|_| RecordError::NotUtf8)
    }

    pub(super) fn optional_string(&mut self) -> Result<Option<String>, RecordError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.string()?)),
            flag => Err(RecordError::BadFlag(flag)),
        }
    }

    pub(super) fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub(super) fn uuid(&mut self) -> Result<Uuid, RecordError> {
        Ok(Uuid::from_bytes(self.array()?))
    }

    pub(super) fn list<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, RecordError>,
    ) -> Result<Vec<T>, RecordError> {
        let count = u16::from_be_bytes(self.array()?) as usize;
        if count > MAX_LIST_LENGTH {
            return Err(RecordError::ListTooLong(count));
        }
        // At most MAX_LIST_LENGTH, so reserving it all up front is bounded.
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(item(self)?);
        }
        Ok(items)
    }
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
