//! Publishes the metadata quorum's image to every shard: when the image changes (the cluster id is
//! committed, a broker registers, is fenced or unfenced), the control plane makes a new metadata version
//! carrying the live brokers and the cluster id, and broadcasts it like any other change (under the
//! control lock, so versions stay in order). A changed cluster id (a directory formatted by the quorum
//! for the first time) is persisted in `cluster_metadata.toml` too.

use super::broadcast;
use crate::metadata::BrokerEndpoint;
use crate::quorum::Quorum;
use crate::shard_state::ShardState;
use std::rc::{Rc, Weak};
use std::sync::Arc;

/// Runs until the shard is gone or shutting down.
pub async fn run(state: Weak<ShardState>, quorum: Rc<Quorum>) {
    loop {
        let changed = quorum.changed.listen();
        {
            let Some(state) = state.upgrade().filter(|state| !state.shutting_down.get()) else {
                return;
            };
            publish(&state, &quorum).await;
        }
        changed.await;
    }
}

async fn publish(state: &Rc<ShardState>, quorum: &Quorum) {
    let _serialized = state.control_lock.lock().await;
    let image = quorum.image.borrow().clone();
    let current = state.metadata();
    let brokers: Vec<BrokerEndpoint> = image
        .live_brokers()
        .map(|broker| BrokerEndpoint {
            node_id: broker.node_id,
            host: broker.host.clone(),
            port: broker.port,
            rack: broker.rack.clone(),
        })
        .collect();
    let cluster_id = image
        .cluster_id
        .clone()
        .unwrap_or_else(|| current.cluster_id.clone());
    if current.brokers == brokers && current.cluster_id == cluster_id {
        return;
    }
    let mut metadata = (*current).clone();
    if metadata.cluster_id != cluster_id {
        tracing::info!(from = %metadata.cluster_id, to = %cluster_id, "adopting the quorum's cluster id");
        metadata.cluster_id = cluster_id;
        if let Err(error) = metadata.persist(&state.config.data_dir) {
            tracing::error!(%error, "cannot persist metadata");
        }
    }
    metadata.brokers = brokers;
    metadata.version += 1;
    broadcast(state, Arc::new(metadata)).await;
}
