//! Kafka semantics on top of the shard runtime, the storage engine and the wire protocol.
//!
//! Layout:
//! - [`config`]: flags, the TOML file, topic configs and their validation.
//! - [`data_dir`]: start-up checks of the data directory (metadata load, re-placement, leftovers).
//! - [`partition_dir`]: partition directory names, their recorded topic ids, crash-safe deletion.
//! - [`meta_properties`]: the data directory's identity (`meta.properties`: cluster id, node id).
//! - [`metadata`]: the cluster metadata snapshot (topics, partition → shard placement), persisted.
//! - [`messages`]: the one enum of cross-shard messages.
//! - [`shard_state`]: what one shard owns; [`server`]: one shard's life (listener, peers, shutdown).
//! - [`partition`]: the partition layer: `Partition` (log and replica state), the shard's `PartitionManager`
//!   (lifecycle, listeners), delayed fetches and produces.
//! - [`scatter_gather`]: splitting a request by owning shard and gathering the answers in request order.
//! - [`log_cleaner`]: the per-shard log cleaner task (compaction of `cleanup.policy=compact` logs).
//! - [`internal_topics`]: the registry of internal topics the core asks (it names none itself).
//! - [`control`]: the control plane on shard 0 (topic changes, producer ids), broadcasting metadata.
//! - [`quorum`]: the metadata quorum (Raft via raft-rs) on shard 0: its log, transport, records and image.
//! - [`fetch_session`]: incremental fetch sessions (KIP-227), per shard.
//! - [`replica_selector`]: which replica a consumer should fetch from (KIP-392, `replica_selector`).
//! - [`purgatory`]: delayed operations (waiting fetches and acks=all produces) completed by an event on a key or
//!   by timeout, on a hierarchical timing wheel.
//! - [`group`]: the group coordinator (consumer groups, committed offsets in `__consumer_offsets`), one per
//!   partition of its internal topic; [`group_router`]: routes group requests to the shard owning it.
//! - [`handlers`]: one file per Kafka API and the registry ApiVersions answers from; [`protocol`]: small
//!   wire-type helpers they and the group coordinator share.
//! - [`connection_limits`], [`descriptor_budget`], [`log_limit`], [`memory_trim`]: what bounds clients' use of the broker
//!   (connections, descriptors, log lines).
//!
//! A request's path: a shard accepts the connection → `net` frames it → `handlers::dispatch` → the API's
//! handler splits the work by owning shard (`scatter_gather`: the `PartitionManager` locally, a `ShardMessage` otherwise) → the
//! response leaves the connection in request order.
pub mod config;
pub mod connection_limits;
pub mod control;
pub mod data_dir;
pub mod descriptor_budget;
pub mod fetch_session;
pub mod group;
pub mod group_router;
pub mod handlers;
#[cfg(test)]
mod in_process_tests;
pub mod inter_broker;
pub mod internal_topics;
pub mod log_cleaner;
pub mod log_limit;
pub mod log_retention;
pub mod memory_trim;
pub mod messages;
pub mod meta_properties;
pub mod metadata;
pub mod partition;
pub mod partition_dir;
pub mod protocol;
pub mod purgatory;
pub mod quorum;
pub mod replica_fetcher;
pub mod replica_selector;
pub mod replication_quota;
pub mod scatter_gather;
pub mod server;
pub mod shard_state;
pub mod txn;
pub mod txn_remote;
pub mod txn_router;
pub mod txn_verification;
