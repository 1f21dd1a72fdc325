//! Everything one shard owns: its copy of the metadata, its partitions (and their caches), its fetch
//! sessions, its group coordinators, its mesh endpoint. Lives in an `Rc` on the shard's executor; never
//! crosses threads.

use crate::config::BrokerConfig;
use crate::fetch_session::FetchSessions;
use crate::group::GroupCoordinator;
use crate::messages::ShardMessage;
use crate::metadata::ClusterMetadata;
use crate::partition::manager::PartitionManager;
use crate::txn::TransactionCoordinator;
use kafka_protocol::error::ResponseError;
use shard::{Mesh, ShardId};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

pub struct ShardState {
    pub id: ShardId,
    pub config: Arc<BrokerConfig>,
    pub mesh: Mesh<ShardMessage>,
    /// This shard's copy of the cluster metadata (replaced wholesale by shard 0's broadcasts).
    pub metadata: RefCell<Arc<ClusterMetadata>>,
    /// The partitions this shard owns.
    pub partitions: PartitionManager,
    /// Serializes control-plane changes (shard 0 only).
    pub control_lock: async_lock::Mutex<()>,
    pub shutting_down: Cell<bool>,
    /// Incremental fetch sessions of this shard's connections.
    pub fetch_sessions: FetchSessions,
    /// The group coordinators of the `__consumer_offsets` partitions this shard owns.
    pub groups: Rc<GroupCoordinator>,
    /// The transaction coordinators of the `__transaction_state` partitions this shard owns.
    pub transactions: Rc<TransactionCoordinator>,
    /// The metadata quorum (shard 0 only, once started).
    pub quorum: RefCell<Option<Rc<crate::quorum::Quorum>>>,
    /// Serializes producer-id block requests (shard 0 only; see `control::producer_ids`).
    pub producer_id_lock: async_lock::Mutex<()>,
    /// The producer ids of this node's current block not yet handed out (shard 0 only).
    pub producer_id_block: Cell<crate::quorum::image::ProducerIdBlock>,
}

impl ShardState {
    /// A shard's state before its first metadata version (`apply_metadata` opens its partitions).
    pub fn new(
        id: ShardId,
        config: Arc<BrokerConfig>,
        mesh: Mesh<ShardMessage>,
        partitions: PartitionManager,
    ) -> ShardState {
        // The group coordinator hears of its partitions as a lifecycle listener.
        let groups = Rc::new(GroupCoordinator::new(config.groups.clone()));
        partitions.subscribe(groups.clone());
        let transactions = Rc::new(TransactionCoordinator::new(config.transactions.clone()));
        partitions.subscribe(transactions.clone());
        ShardState {
            id,
            config,
            mesh,
            metadata: RefCell::new(Arc::new(ClusterMetadata::default())),
            partitions,
            control_lock: async_lock::Mutex::new(()),
            shutting_down: Cell::new(false),
            fetch_sessions: Default::default(),
            groups,
            transactions,
            quorum: RefCell::new(None),
            producer_id_lock: async_lock::Mutex::new(()),
            producer_id_block: Cell::default(),
        }
    }

    /// The quorum's status as this shard knows it (the default, no leader, where it does not run).
    pub fn quorum_status(&self) -> crate::quorum::QuorumStatus {
        self.quorum
            .borrow()
            .as_ref()
            .map(|quorum| quorum.status.borrow().clone())
            .unwrap_or_default()
    }

    /// Starts the shard's timers (until shutdown): the expiration drivers of its delayed operations, the
    /// group timer, the transaction coordinator's timers, the retention task (`log_retention`)
    /// and the log cleaner task (`log_cleaner`).
    pub fn start_timers(self: &Rc<Self>) {
        let state = Rc::downgrade(self);
        let stopped = move || {
            state
                .upgrade()
                .is_none_or(|state| state.shutting_down.get())
        };
        self.partitions.delayed().start_expiration(stopped.clone());
        shard::task::spawn(self.groups.clone().run_timer(stopped.clone()));
        self.transactions.start_timers(stopped.clone());
        let state = Rc::downgrade(self);
        let partitions = move || {
            state
                .upgrade()
                .map(|state| state.partitions.all())
                .unwrap_or_default()
        };
        let state = Rc::downgrade(self);
        let lifecycle = move || {
            state
                .upgrade()
                .map(|state| state.effective_lifecycle())
                .unwrap_or_default()
        };
        crate::log_cleaner::start(lifecycle, stopped, partitions);
        let state = Rc::downgrade(self);
        let retention = move || {
            let state = state.upgrade()?;
            let lifecycle = state.effective_lifecycle();
            (!state.shutting_down.get()).then(|| (lifecycle, state.partitions.all()))
        };
        shard::task::spawn(crate::log_retention::run(retention));
    }

    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.metadata.borrow().clone()
    }

    /// Retention's and the log cleaner's settings in force now: the static ones under the dynamic broker
    /// configs of the current metadata version (AlterConfigs changes them without a restart). Background
    /// tasks read it on each pass.
    pub fn effective_lifecycle(&self) -> crate::config::LifecycleConfig {
        self.config
            .effective_lifecycle(self.metadata.borrow().dynamic_configs())
    }

    /// The topic defaults in force now (static broker settings under the dynamic broker configs).
    pub fn effective_log_defaults(&self) -> storage::log::LogConfig {
        self.config
            .effective_log_defaults(self.metadata.borrow().dynamic_configs())
    }

    /// Adopts a new metadata version: this shard's partitions open, close or go accordingly. Returns the
    /// partitions it could not open.
    pub async fn apply_metadata(
        &self,
        metadata: Arc<ClusterMetadata>,
    ) -> Vec<crate::partition::manager::UnopenedPartition> {
        let previous = self.metadata.replace(metadata.clone());
        self.partitions
            .apply_metadata(self.id.0, &metadata, &previous)
            .await
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
