//! Producer ids for InitProducerId, unique across the cluster: the control plane takes blocks of
//! `PRODUCER_ID_BLOCK_SIZE` ids through the metadata quorum (a `ProducerIds` record, as KRaft's
//! AllocateProducerIds) and hands them out one by one. A block is taken at or past both the image's next
//! free id and this node's `next_producer_id` from before the quorum (`cluster_metadata.toml`), so no id
//! handed out before an upgrade is handed out again. A restart abandons the rest of its block, as Kafka
//! does; ids are plentiful (2^63).
//!
//! Without a quorum (the in-process tests' shards), ids come from `next_producer_id` as before: bumped
//! and persisted one by one.

use crate::quorum::image::Change;
use crate::quorum::records::MetadataRecord;
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Ids per block.
pub const PRODUCER_ID_BLOCK_SIZE: i32 = 1000;
/// How long InitProducerId waits for the quorum to commit a block, a leader included (then
/// COORDINATOR_LOAD_IN_PROGRESS, which clients retry, as Kafka answers while its block is not yet
/// available). The wait holds the producer-id lock only, never the control lock.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// Blocks proposed per request before giving up when other nodes keep taking them first.
const BLOCK_ATTEMPTS: usize = 3;

use crate::quorum::image::ProducerIdBlock;

/// The next producer id (shard 0).
pub async fn allocate(state: &Rc<ShardState>) -> Result<i64, ResponseError> {
    let quorum = state.quorum.borrow().clone();
    let Some(quorum) = quorum else {
        let _serialized = state.control_lock.lock().await;
        return allocate_without_quorum(state);
    };
    // One block request at a time: a second caller finds the block the first one took.
    let _serialized = state.producer_id_lock.lock().await;
    for _ in 0..BLOCK_ATTEMPTS {
        let block = state.producer_id_block.get();
        if block.next < block.end {
            state.producer_id_block.set(ProducerIdBlock {
                next: block.next + 1,
                end: block.end,
            });
            return Ok(block.next);
        }
        let first_id = quorum
            .image
            .borrow()
            .next_producer_id
            .max(state.metadata().next_producer_id);
        let record = MetadataRecord::ProducerIds {
            node_id: state.config.node_id,
            first_id,
            count: PRODUCER_ID_BLOCK_SIZE,
        };
        match quorum.propose(record, BLOCK_TIMEOUT).await {
            Ok(applied) if applied.change == Change::ProducerIds => {
                tracing::debug!(
                    first_id,
                    count = PRODUCER_ID_BLOCK_SIZE,
                    "producer-id block taken"
                );
                state.producer_id_block.set(ProducerIdBlock {
                    next: first_id,
                    end: first_id + i64::from(PRODUCER_ID_BLOCK_SIZE),
                });
            }
            // Another node's block came first: propose again from the new next free id.
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "no producer-id block");
                return Err(ResponseError::CoordinatorLoadInProgress);
            }
        }
    }
    Err(ResponseError::CoordinatorLoadInProgress)
}

fn allocate_without_quorum(state: &Rc<ShardState>) -> Result<i64, ResponseError> {
    let mut metadata = (*state.metadata()).clone();
    let id = metadata.next_producer_id;
    metadata.next_producer_id += 1;
    if let Err(error) = metadata.persist(&state.config.data_dir) {
        tracing::error!(%error, "cannot persist metadata");
        return Err(ResponseError::KafkaStorageError);
    }
    state.metadata.replace(Arc::new(metadata));
    Ok(id)
}
