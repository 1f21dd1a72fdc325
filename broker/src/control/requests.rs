//! The control plane's requests and answers: what shard 0 is asked to change (the `Control` cross-shard
//! message carries them) and what it answers.

use kafka_protocol::error::ResponseError;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
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
