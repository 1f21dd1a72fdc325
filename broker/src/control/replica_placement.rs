//! Replicas of new partitions: how many (a topic's replication factor: as requested, else
//! `default.replication.factor`, at most the live brokers — INVALID_REPLICATION_FACTOR beyond, as Kafka
//! answers) and on which brokers (`quorum::placement`: rack-aware, preferred leaders spread, rotated by
//! topic so that small topics do not all lead on the same broker). A new partition's leader is its first
//! replica, and its ISR that leader alone: until replication exists the other replicas hold nothing.

use super::requests::{NewTopic, TopicOutcome};
use crate::config::{BrokerConfig, MAX_REPLICATION_FACTOR};
use crate::internal_topics;
use crate::metadata::{ClusterMetadata, PartitionState};
use crate::quorum::placement::assign_replicas;
use kafka_protocol::error::ResponseError;
use std::ops::Range;

/// Kafka's default replication factor of its internal topics (`offsets.topic.replication.factor`,
/// `transaction.state.log.replication.factor`), here capped at the live brokers so that a single broker
/// still creates them.
pub const INTERNAL_TOPIC_REPLICATION_FACTOR: usize = 3;

type Refusal = (ResponseError, String);

/// The partitions of `topic`, a new topic: explicit assignments checked against the live brokers, or
/// placed.
pub fn for_new_topic(
    config: &BrokerConfig,
    metadata: &ClusterMetadata,
    topic: &NewTopic,
) -> Result<Vec<PartitionState>, Refusal> {
    let live: Vec<i32> = metadata
        .listed_brokers(config)
        .iter()
        .map(|broker| broker.node_id)
        .collect();
    if !topic.assignments.is_empty() {
        let factor = topic.assignments[0].len();
        for (index, replicas) in topic.assignments.iter().enumerate() {
            let mut distinct = replicas.clone();
            distinct.sort_unstable();
            distinct.dedup();
            if replicas.is_empty() || replicas.len() != factor || distinct.len() != replicas.len() {
                return Err((
                    ResponseError::InvalidReplicaAssignment,
                    format!("partition {index}: replicas must be distinct, non-empty and as many for every partition"),
                ));
            }
            if let Some(unknown) = replicas.iter().find(|id| !live.contains(id)) {
                return Err((
                    ResponseError::InvalidReplicaAssignment,
                    format!("partition {index}: broker {unknown} is not a live broker"),
                ));
            }
        }
        return Ok(topic
            .assignments
            .iter()
            .map(|replicas| new_partition(replicas.clone()))
            .collect());
    }
    let factor = replication_factor(config, &topic.name, topic.replication_factor, live.len())?;
    place(config, metadata, &topic.name, 0..topic.partitions, factor)
}

/// The replication factor of a new topic, checked against `live` brokers.
fn replication_factor(
    config: &BrokerConfig,
    name: &str,
    requested: Option<i16>,
    live: usize,
) -> Result<usize, Refusal> {
    let factor = match requested {
        Some(factor) => factor,
        None if internal_topics::is_internal(name) => {
            return Ok(INTERNAL_TOPIC_REPLICATION_FACTOR.min(live).max(1))
        }
        None => config.default_replication_factor,
    };
    if !(1..=MAX_REPLICATION_FACTOR).contains(&factor) {
        return Err((
            ResponseError::InvalidReplicationFactor,
            format!("Replication factor must be in 1..={MAX_REPLICATION_FACTOR}, not {factor}."),
        ));
    }
    if factor as usize > live {
        return Err((
            ResponseError::InvalidReplicationFactor,
            format!(
                "Unable to replicate the partition {factor} time(s): The target replication factor of {factor} cannot be reached because only {live} broker(s) are registered."
            ),
        ));
    }
    Ok(factor as usize)
}

/// Replicas for partitions `indexes` of topic `name` with `factor` replicas each, on the live brokers.
pub fn place(
    config: &BrokerConfig,
    metadata: &ClusterMetadata,
    name: &str,
    indexes: Range<i32>,
    factor: usize,
) -> Result<Vec<PartitionState>, Refusal> {
    let brokers: Vec<(i32, Option<String>)> = metadata
        .listed_brokers(config)
        .into_iter()
        .map(|broker| (broker.node_id, broker.rack))
        .collect();
    if factor > brokers.len() {
        return Err((
            ResponseError::InvalidReplicationFactor,
            format!(
                "Unable to replicate the partition {factor} time(s): only {} broker(s) are registered.",
                brokers.len()
            ),
        ));
    }
    let start = name_hash(name) % brokers.len();
    Ok(assign_replicas(&brokers, indexes, factor, start)
        .into_iter()
        .map(new_partition)
        .collect())
}

/// Without the quorum (a node whose topics it does not manage yet, and the in-process tests) every
/// partition is this node's alone.
pub fn check_single_node(config: &BrokerConfig, topic: &NewTopic) -> TopicOutcome {
    let one = |replicas: &Vec<i32>| replicas.len() == 1 && replicas[0] == config.node_id;
    if topic.replication_factor.is_some_and(|factor| factor != 1)
        || !topic.assignments.iter().all(one)
    {
        return Err((
            ResponseError::InvalidReplicationFactor,
            format!(
                "replication factor {} is larger than the 1 available broker",
                topic.replication_factor.unwrap_or(1)
            ),
        ));
    }
    Ok(())
}

/// A new partition: every replica starts in sync (they are all empty), the first one leads.
fn new_partition(replicas: Vec<i32>) -> PartitionState {
    let leader = replicas[0];
    PartitionState {
        isr: replicas.clone(),
        replicas,
        leader,
        leader_epoch: 0,
        partition_epoch: 0,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
    }
}

/// A stable hash of a topic name (FNV-1a): the same rotation on every node and every start.
fn name_hash(name: &str) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as usize
}
