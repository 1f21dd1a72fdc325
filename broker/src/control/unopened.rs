//! Partitions that metadata placed on a shard but that shard could not open (out of descriptors, disk
//! errors): the topic change that created them must not be reported as a success.
//!
//! Every shard's `apply_metadata` returns what it failed to open; the control plane gathers them after
//! its broadcast and turns the outcome of each topic concerned into KAFKA_STORAGE_ERROR (the code Kafka
//! gives when a log directory cannot serve a partition). The topic stays in the metadata: the next start
//! (or a later metadata change) tries to open the partition again.

use super::requests::{ControlRequest, ControlResponse};
use crate::partition::manager::UnopenedPartition;
use kafka_protocol::error::ResponseError;

/// The topics a request creates or grows, in the order of its outcomes (empty for other requests).
pub fn requested_topics(request: &ControlRequest) -> Vec<String> {
    match request {
        ControlRequest::CreateTopics { topics, .. } => {
            topics.iter().map(|topic| topic.name.clone()).collect()
        }
        ControlRequest::CreatePartitions { topics, .. } => {
            topics.iter().map(|(name, _)| name.clone()).collect()
        }
        _ => Vec::new(),
    }
}

/// Turns the successful outcomes of topics with unopened partitions into errors.
pub fn fail_unopened(
    mut response: ControlResponse,
    requested: &[String],
    unopened: &[UnopenedPartition],
) -> ControlResponse {
    if let ControlResponse::Topics(outcomes) = &mut response {
        for (outcome, name) in outcomes.iter_mut().zip(requested) {
            let failed: Vec<i32> = unopened
                .iter()
                .filter(|(topic, _)| topic == name)
                .map(|(_, index)| *index)
                .collect();
            if outcome.is_ok() && !failed.is_empty() {
                *outcome = Err((
                    ResponseError::KafkaStorageError,
                    format!(
                        "partitions {failed:?} of {name} could not be opened; see the broker log"
                    ),
                ));
            }
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_topics_with_unopened_partitions_fail() {
        let response = ControlResponse::Topics(vec![
            Ok(()),
            Ok(()),
            Err((ResponseError::InvalidPartitions, "refused".into())),
        ]);
        let requested = ["a".to_string(), "b".to_string(), "c".to_string()];
        let unopened = [("b".to_string(), 7), ("c".to_string(), 1)];
        let ControlResponse::Topics(outcomes) = fail_unopened(response, &requested, &unopened)
        else {
            panic!("topics response expected");
        };
        assert!(outcomes[0].is_ok());
        assert_eq!(
            outcomes[1].as_ref().unwrap_err().0,
            ResponseError::KafkaStorageError
        );
        assert_eq!(
            outcomes[2].as_ref().unwrap_err().0,
            ResponseError::InvalidPartitions
        );
    }
}
