//! Snapshots of the metadata log: the image at one applied index, in a versioned binary form, so the log
//! before that index can be dropped (`log_store`) and a follower that fell behind it can be sent the
//! image instead of the entries (Raft's InstallSnapshot, carried on the controller port).
//!
//! Format (integers big-endian; strings, optional strings, uuids and lists as in `records`):
//!
//! ```text
//! magic "KMSN", version u8 (0 or 1; this broker writes 1)
//! applied_index u64
//! cluster_id: optional string
//! next_producer_id i64
//! topics_migrated u8 (0 | 1)
//! brokers: count u32, then each
//!     node_id i32, epoch i64, incarnation u64, host string, port u16, rack optional string, fenced u8
//! broker default configs: count u32, then each (name string, value string)
//! topics: count u32, then each
//!     topic_id uuid, name string, configs: count u32 then each (name string, value string),
//!     partitions: count u32 then each
//!         replicas list of i32, isr list of i32, leader i32, leader_epoch i32, partition_epoch i32,
//!         (version 1) adding_replicas list of i32, removing_replicas list of i32
//! crc u32: CRC-32C of everything before it
//! ```
//!
//! Decoding is bounded by the bytes it reads (counts are untrusted: room is reserved for at most
//! `PREALLOCATION` items up front) and checks what the image's records would have: distinct brokers,
//! topic names and ids that do not collide, partitions whose ISR is among their distinct replicas and
//! whose leader is -1 or in the ISR. A snapshot that fails any check is refused whole.
//!
//! Why not rkyv: replaying records into the image is cheaper than the TOML the shards persist, and
//! decoding this form at 100,000 partitions is measured in BENCHMARKS.md; a zero-copy form would still
//! need the image's indexes built.

use super::image::{BrokerRegistration, MetadataImage, PartitionImage, TopicImage};
use super::partition_changes::is_well_formed;
use super::records::{put_list, put_optional_string, put_string, Reader, RecordError};
use std::collections::BTreeMap;
use thiserror::Error;

const MAGIC: &[u8; 4] = b"KMSN";
pub const SNAPSHOT_VERSION: u8 = 1;
/// Largest snapshot made, stored or accepted from the leader (about 1.5 million partitions of three
/// replicas): the controller port's snapshot frames are bounded by it.
pub const MAX_SNAPSHOT_BYTES: usize = 64 << 20;
/// Most items of an untrusted count reserved before they are read.
const PREALLOCATION: usize = 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("not a metadata snapshot (bad magic)")]
    BadMagic,
    #[error("snapshot version {0} is newer than this broker's ({SNAPSHOT_VERSION})")]
    UnknownVersion(u8),
    #[error("snapshot of {0} bytes (at most {MAX_SNAPSHOT_BYTES})")]
    TooLarge(usize),
    #[error("snapshot checksum mismatch")]
    Checksum,
    #[error("snapshot field: {0}")]
    Field(#[from] RecordError),
    #[error("snapshot content: {0}")]
    Invalid(String),
}

/// The image as a snapshot.
pub fn encode(image: &MetadataImage) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 48 * image.topics.len());
    out.extend_from_slice(MAGIC);
    out.push(SNAPSHOT_VERSION);
    out.extend_from_slice(&image.applied_index.to_be_bytes());
    put_optional_string(&mut out, image.cluster_id.as_deref());
    out.extend_from_slice(&image.next_producer_id.to_be_bytes());
    out.push(u8::from(image.topics_migrated));
    put_count(&mut out, image.brokers.len());
    for broker in image.brokers.values() {
        out.extend_from_slice(&broker.node_id.to_be_bytes());
        out.extend_from_slice(&broker.epoch.to_be_bytes());
        out.extend_from_slice(&broker.incarnation.to_be_bytes());
        put_string(&mut out, &broker.host);
        out.extend_from_slice(&broker.port.to_be_bytes());
        put_optional_string(&mut out, broker.rack.as_deref());
        out.push(u8::from(broker.fenced));
    }
    put_configs(&mut out, &image.broker_default_configs);
    put_count(&mut out, image.topics.len());
    for (name, topic) in &image.topics {
        out.extend_from_slice(topic.id.as_bytes());
        put_string(&mut out, name);
        put_configs(&mut out, &topic.configs);
        put_count(&mut out, topic.partitions.len());
        for partition in &topic.partitions {
            let put_id = |out: &mut Vec<u8>, id: &i32| out.extend_from_slice(&id.to_be_bytes());
            put_list(&mut out, &partition.replicas, put_id);
            put_list(&mut out, &partition.isr, put_id);
            out.extend_from_slice(&partition.leader.to_be_bytes());
            out.extend_from_slice(&partition.leader_epoch.to_be_bytes());
            out.extend_from_slice(&partition.partition_epoch.to_be_bytes());
            put_list(&mut out, &partition.adding_replicas, put_id);
            put_list(&mut out, &partition.removing_replicas, put_id);
        }
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// The image a snapshot holds, checked as described in the module documentation.
pub fn decode(data: &[u8]) -> Result<MetadataImage, SnapshotError> {
    if data.len() > MAX_SNAPSHOT_BYTES {
        return Err(SnapshotError::TooLarge(data.len()));
    }
    if data.len() < MAGIC.len() + 1 + 4 || &data[..4] != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let version = data[4];
    if version > SNAPSHOT_VERSION {
        return Err(SnapshotError::UnknownVersion(version));
    }
    let (body, crc) = data.split_at(data.len() - 4);
    if crc32c::crc32c(body).to_be_bytes() != crc {
        return Err(SnapshotError::Checksum);
    }
    let mut reader = Reader { data: &body[5..] };
    let mut image = MetadataImage::default();
    image.applied_index = u64::from_be_bytes(reader.array()?);
    image.cluster_id = reader.optional_string()?;
    image.next_producer_id = i64::from_be_bytes(reader.array()?);
    image.topics_migrated = flag(&mut reader)?;
    if let Some(cluster_id) = &image.cluster_id {
        if !crate::meta_properties::is_valid_cluster_id(cluster_id) {
            return Err(invalid(format!("cluster id {cluster_id:?}")));
        }
    }
    for _ in 0..count(&mut reader)? {
        let broker = BrokerRegistration {
            node_id: reader.i32()?,
            epoch: i64::from_be_bytes(reader.array()?),
            incarnation: u64::from_be_bytes(reader.array()?),
            host: reader.string()?,
            port: u16::from_be_bytes(reader.array()?),
            rack: reader.optional_string()?,
            fenced: flag(&mut reader)?,
        };
        let node_id = broker.node_id;
        if image.brokers.insert(node_id, broker).is_some() {
            return Err(invalid(format!("broker {node_id} twice")));
        }
    }
    image.broker_default_configs = configs(&mut reader)?;
    for _ in 0..count(&mut reader)? {
        let id = reader.uuid()?;
        let name = reader.string()?;
        let configs = configs(&mut reader)?;
        let partition_count = count(&mut reader)?;
        let mut partitions = Vec::with_capacity(partition_count.min(PREALLOCATION));
        for index in 0..partition_count {
            let mut partition = PartitionImage {
                replicas: reader.list(|reader| reader.i32())?,
                isr: reader.list(|reader| reader.i32())?,
                leader: reader.i32()?,
                leader_epoch: reader.i32()?,
                partition_epoch: reader.i32()?,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            };
            if version >= 1 {
                partition.adding_replicas = reader.list(|reader| reader.i32())?;
                partition.removing_replicas = reader.list(|reader| reader.i32())?;
            }
            let moving = |ids: &[i32]| ids.iter().all(|id| partition.replicas.contains(id));
            if !is_well_formed(&partition.replicas, &partition.isr, partition.leader)
                || !moving(&partition.adding_replicas)
                || !moving(&partition.removing_replicas)
            {
                return Err(invalid(format!("partition {index} of topic {name:?}")));
            }
            partitions.push(partition);
        }
        let topic = TopicImage {
            id,
            configs,
            partitions,
        };
        if !image.restore_topic(name.clone(), topic) {
            return Err(invalid(format!("topic {name:?} ({id}) collides")));
        }
    }
    if !reader.data.is_empty() {
        return Err(RecordError::TrailingBytes(reader.data.len()).into());
    }
    Ok(image)
}

fn invalid(reason: String) -> SnapshotError {
    SnapshotError::Invalid(reason)
}

fn put_count(out: &mut Vec<u8>, count: usize) {
    out.extend_from_slice(&(count as u32).to_be_bytes());
}

fn put_configs(out: &mut Vec<u8>, configs: &BTreeMap<String, String>) {
    put_count(out, configs.len());
    for (name, value) in configs {
        put_string(out, name);
        put_string(out, value);
    }
}

fn count(reader: &mut Reader) -> Result<usize, SnapshotError> {
    Ok(u32::from_be_bytes(reader.array()?) as usize)
}

fn flag(reader: &mut Reader) -> Result<bool, SnapshotError> {
    match reader.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(RecordError::BadFlag(other).into()),
    }
}

fn configs(reader: &mut Reader) -> Result<BTreeMap<String, String>, SnapshotError> {
    let mut configs = BTreeMap::new();
    for _ in 0..count(reader)? {
        let name = reader.string()?;
        let value = reader.string()?;
        if configs.insert(name.clone(), value).is_some() {
            return Err(invalid(format!("config {name:?} twice")));
        }
    }
    Ok(configs)
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
