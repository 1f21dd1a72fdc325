//! A partition leader's ISR change, through the metadata quorum (Kafka's AlterPartition API between a
//! broker and the active controller, here a record any node proposes): the leader asks, the quorum
//! commits an `AlterPartition` record, and every node applies it to its image only if the leader and
//! both epochs it was made against are still the partition's (see `quorum::image`). The new ISR then
//! reaches the shards with the next metadata version, like any other change. A stale or malformed
//! change is refused the same way on every node; the leader looks again and asks anew.

use super::requests::TopicOutcome;
use crate::partition::replicas::IsrChange;
use crate::quorum::image::Change;
use crate::quorum::records::MetadataRecord;
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use std::rc::Rc;
use std::time::Duration;

/// How long a change may wait for the quorum (a leaderless quorum commits nothing).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Proposes `change` to `topic`'s partition `partition`, led by this node; waits until applied here.
pub async fn propose(
    state: &Rc<ShardState>,
    topic: &str,
    partition: i32,
    change: IsrChange,
) -> TopicOutcome {
    let quorum = state.quorum.borrow().clone();
    let Some(quorum) = quorum else {
        return Err((
            ResponseError::NotController,
            "no metadata quorum on this node".into(),
        ));
    };
    let Some(topic_id) = state.metadata().topics.get(topic).map(|topic| topic.id) else {
        return Err((ResponseError::UnknownTopicOrPartition, topic.to_string()));
    };
    let record = MetadataRecord::AlterPartition {
        topic_id,
        partition,
        leader: state.config.node_id,
        leader_epoch: change.leader_epoch.0,
        partition_epoch: change.partition_epoch,
        isr: change.isr,
    };
    match quorum.propose(record, COMMIT_TIMEOUT).await {
        Ok(applied) if applied.change == Change::Topics => Ok(()),
        Ok(_) => Err((
            ResponseError::InvalidUpdateVersion,
            "the partition changed since the leader looked".into(),
        )),
        Err(error) => Err((ResponseError::RequestTimedOut, error.to_string())),
    }
}
