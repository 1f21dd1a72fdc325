//! The control plane's requests and answers: what shard 0 is asked to change (the `Control` cross-shard
//! message carries them) and what it answers.

use crate::config::alter::ConfigChange;
use crate::partition::replicas::IsrChange;
use crate::quorum::records::Election;
use kafka_protocol::error::ResponseError;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
    /// Replicas of each partition; `None`: `default.replication.factor` (internal topics: up to 3, as
    /// Kafka's `offsets.topic.replication.factor` default, within the live brokers).
    pub replication_factor: Option<i16>,
    /// Replicas of each partition by index, as the request assigned them; empty: placed by the
    /// controller (rack-aware, leaders spread).
    pub assignments: Vec<Vec<i32>>,
}

pub enum ControlRequest {
    CreateTopics {
        topics: Vec<NewTopic>,
        validate_only: bool,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    CreatePartitions {
        topics: Vec<(String, i32)>,
        validate_only: bool,
    },
    AllocateProducerId,
    /// AlterConfigs / IncrementalAlterConfigs: one outcome per alteration, in order.
    AlterConfigs {
        alterations: Vec<ConfigAlteration>,
        validate_only: bool,
    },
    /// A partition leader's ISR change (Kafka's AlterPartition): one outcome.
    AlterPartition {
        topic: String,
        partition: i32,
        change: IsrChange,
    },
    /// ElectLeaders: one outcome per partition, in order.
    ElectLeaders {
        election: Election,
        partitions: Vec<(String, i32)>,
    },
    /// AlterPartitionReassignments: one outcome per reassignment, in order.
    Reassign {
        reassignments: Vec<Reassignment>,
    },
}

impl ControlRequest {
    /// How many outcomes its answer has (one per topic or alteration).
    pub fn outcome_count(&self) -> usize {
        match self {
            ControlRequest::CreateTopics { topics, .. } => topics.len(),
            ControlRequest::DeleteTopics { names } => names.len(),
            ControlRequest::CreatePartitions { topics, .. } => topics.len(),
            ControlRequest::AllocateProducerId => 0,
            ControlRequest::AlterConfigs { alterations, .. } => alterations.len(),
            ControlRequest::AlterPartition { .. } => 1,
            ControlRequest::ElectLeaders { partitions, .. } => partitions.len(),
            ControlRequest::Reassign { reassignments } => reassignments.len(),
        }
    }
}

/// Whose configs an alteration changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigResource {
    /// A topic's overrides.
    Topic(String),
    /// The dynamic broker configs of every broker (resource name "").
    BrokerDefault,
    /// This broker's dynamic configs (resource name = its node id).
    ThisBroker,
}

/// The changes to one resource's configs.
#[derive(Clone, Debug)]
pub struct ConfigAlteration {
    pub resource: ConfigResource,
    /// AlterConfigs: the changes (all SETs) are the resource's whole new set.
    pub replace_all: bool,
    pub changes: Vec<ConfigChange>,
}

/// One partition's reassignment: to `target`, or cancelled (`None`).
#[derive(Clone, Debug)]
pub struct Reassignment {
    pub topic: String,
    pub partition: i32,
    pub target: Option<Vec<i32>>,
    /// AlterPartitionReassignments v1's `allow_replication_factor_change` (v0: true).
    pub allow_replication_factor_change: bool,
}

pub type TopicOutcome = Result<(), (ResponseError, String)>;

pub enum ControlResponse {
    Topics(Vec<TopicOutcome>),
    ProducerId(Result<i64, ResponseError>),
}

/// Topic outcomes of a response, whatever went wrong on the way.
pub fn topic_outcomes(response: ControlResponse, count: usize) -> Vec<TopicOutcome> {
    match response {
        ControlResponse::Topics(outcomes) => outcomes,
        ControlResponse::ProducerId(_) => vec![
            Err((
                ResponseError::BrokerNotAvailable,
                "control plane unavailable".into()
            ));
            count
        ],
    }
}
