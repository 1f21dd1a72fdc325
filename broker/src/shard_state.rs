//! Everything one shard owns: its copy of the metadata, its partitions, its caches, its mesh endpoint.
//! Lives in an `Rc` on the shard's executor; never crosses threads.

use crate::config::BrokerConfig;
use crate::fetch_session::FetchSessions;
use crate::group::GroupCoordinator;
use crate::messages::ShardMessage;
use crate::metadata::ClusterMetadata;
use crate::partitions::Partition;
use kafka_protocol::error::ResponseError;
use shard::dma::DmaFileSystem;
use shard::{Mesh, ShardId};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use storage::{BatchCache, SegmentFilePool};

pub type TopicPartition = (String, i32);

pub struct ShardState {
    pub id: ShardId,
    pub config: Arc<BrokerConfig>,
    pub mesh: Mesh<ShardMessage>,
    /// This shard's copy of the cluster metadata (replaced wholesale by shard 0's broadcasts).
    pub metadata: RefCell<Arc<ClusterMetadata>>,
    /// The partitions this shard owns.
    pub partitions: RefCell<HashMap<TopicPartition, Rc<Partition>>>,
    pub cache: Rc<BatchCache>,
    pub fs: DmaFileSystem,
    /// Open inactive-segment files of this shard's logs (bounded; see `descriptor_budget`).
    pub segment_files: Rc<SegmentFilePool<DmaFileSystem>>,
    /// The data directory was shut down cleanly: logs may skip recovery.
    pub clean_start: bool,
    /// Serializes control-plane changes (shard 0 only).
    pub control_lock: async_lock::Mutex<()>,
    pub shutting_down: Cell<bool>,
    /// Incremental fetch sessions of this shard's connections.
    pub fetch_sessions: FetchSessions,
    /// The group coordinators of the `__consumer_offsets` partitions this shard owns.
    pub groups: GroupCoordinator,
}

impl ShardState {
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.metadata.borrow().clone()
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        self.partitions
            .borrow()
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    /// Sends `make(reply)` to shard `to` and returns the receiver of its reply once the message is in the
    /// peer's queue (the dispatch point).
    pub async fn send<T>(
        &self,
        to: ShardId,
        make: impl FnOnce(shard::ReplySender<T>) -> ShardMessage,
    ) -> Result<shard::ReplyReceiver<T>, ResponseError> {
        // Metadata is fitted to the shard count at start-up; the mesh refuses an index it lacks too.
        let (reply, receiver) = shard::reply_channel();
        match self.mesh.send(to, make(reply)).await {
            Ok(()) => Ok(receiver),
            Err(error) => {
                if let shard::SendError::NoSuchShard(..) = error {
                    tracing::error!(%to, shards = self.mesh.shard_count(), "message for a shard outside the mesh");
                }
                Err(ResponseError::BrokerNotAvailable)
            }
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
