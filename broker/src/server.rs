//! One shard's life: join the mesh, open its partitions, serve Kafka connections on its own
//! SO_REUSEPORT listener, answer other shards' messages, and shut down cleanly.

use crate::config::BrokerConfig;
use crate::connection_limits::ConnectionRegistry;
use crate::control::{control, ControlResponse};
use crate::handlers;
use crate::log_limit::LogLimiter;
use crate::messages::ShardMessage;
use crate::metadata::ClusterMetadata;
use crate::partition::delayed::Completion;
use crate::partition::manager::{PartitionManager, PartitionResources};
use crate::shard_state::ShardState;
use bytes::Bytes;
use futures_lite::future::poll_once;
use net::{
    CloseConnection, ConnectionActivity, ConnectionLimits, ConnectionShared, DispatchFuture,
    RequestBudget, Service,
};
use shard::dma::DmaFileSystem;
use shard::mesh::Receiver;
use shard::{MeshBuilder, ShardId};

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::BatchCache;

/// How often a shard looks at the shutdown flag and time-based flushes (group deadlines have their own
/// timer, started with the shard's timers: `ShardState::start_timers`).
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(100);

/// How long a stopping shard 0 waits for the quorum's Ready loop to finish its write in flight.
const QUORUM_STOP_LIMIT: Duration = Duration::from_secs(5);

/// Most requests one connection may have awaiting their responses.
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 32;

/// Client-triggered log lines: at most this many per window, then a count (see `log_limit`).
const CLIENT_LOG_WINDOW: Duration = Duration::from_secs(10);
const CLIENT_LOG_BURST: u32 = 5;
static REFUSED_CONNECTIONS: LogLimiter = LogLimiter::new(CLIENT_LOG_WINDOW, CLIENT_LOG_BURST);
static FAILED_ACCEPTS: LogLimiter = LogLimiter::new(CLIENT_LOG_WINDOW, CLIENT_LOG_BURST);
static BROKEN_CONNECTIONS: LogLimiter = LogLimiter::new(CLIENT_LOG_WINDOW, CLIENT_LOG_BURST);
static BAD_HEADERS: LogLimiter = LogLimiter::new(CLIENT_LOG_WINDOW, CLIENT_LOG_BURST);
/// After an accept fails for want of descriptors (EMFILE/ENFILE), wait this long before the next.
const ACCEPT_BACKOFF_NO_DESCRIPTORS: Duration = Duration::from_millis(100);

pub struct ShardStart {
    pub config: Arc<BrokerConfig>,
    pub metadata: Arc<ClusterMetadata>,
    pub mesh: MeshBuilder<ShardMessage>,
    pub clean_start: bool,
    pub shutdown: Arc<AtomicBool>,
    /// Set by each shard once it listens (tests and the start-up log use it).
    pub ready: Arc<std::sync::atomic::AtomicUsize>,
    /// What the controller shard starts the metadata quorum with (taken by shard 0).
    pub quorum: Arc<std::sync::Mutex<Option<QuorumStart>>>,
}

/// The metadata quorum's start: its log, opened and replayed by main, and the directory's cluster id
/// (`meta.properties`) if it is formatted.
pub struct QuorumStart {
    pub log: crate::quorum::log_store::QuorumLog,
    pub cluster_id: Option<String>,
}

/// The body of shard `id`'s executor. Returns after a clean shutdown.
pub async fn run_shard(id: ShardId, start: ShardStart) {
    let (mesh, receivers) = start.mesh.join(id);
    let direct = start.config.direct_io
        && DmaFileSystem::prepare(&start.config.data_dir, id.0)
            .await
            .unwrap_or(false);
    let fs = shard::files::ShardFileSystem::Dma(DmaFileSystem { direct });
    let budget = crate::descriptor_budget::DescriptorBudget::of(&start.config);
    let segment_files = Rc::new(
        storage::SegmentFilePool::new(
            fs,
            crate::descriptor_budget::segment_files_per_shard(&budget, start.config.shards),
        )
        .with_read_ahead(start.config.read_ahead),
    );
    let partitions = PartitionManager::new(PartitionResources {
        config: start.config.clone(),
        files: fs,
        cache: Rc::new(BatchCache::new(start.config.batch_cache_bytes)),
        segment_files,
        clean_start: start.clean_start,
    });
    let state = Rc::new(ShardState::new(id, start.config.clone(), mesh, partitions));
    // Bind first (connections wait in the backlog until the accept loop runs): the narrower the gap
    // after main's check that the port is free, the less room for another process to slip in. A
    // controller-only node serves no clients: no listener.
    let listener = if start.config.process_roles.broker {
        match shard::net::Listener::bind(start.config.listen) {
            Ok(listener) => Some(listener),
            Err(error) => {
                tracing::error!(address = %start.config.listen, %error, "cannot listen");
                start.shutdown.store(true, Ordering::SeqCst);
                state.mesh.shut_down();
                return;
            }
        }
    } else {
        None
    };
    crate::txn_router::install_services(&state);
    state.start_timers();
    state.apply_metadata(start.metadata.clone()).await;
    if id == crate::control::CONTROL_SHARD {
        start_quorum(&state, &start.config, &start.quorum);
    }
    for (peer, receiver) in receivers {
        shard::task::spawn(serve_peer(state.clone(), peer, receiver));
    }
    tracing::info!(
        shard = id.0,
        partitions = state.partitions.len(),
        direct_io = direct,
        "shard ready"
    );
    start.ready.fetch_add(1, Ordering::SeqCst);
    let accepting = async {
        match listener {
            Some(listener) => accept_loop(state.clone(), listener).await,
            None => std::future::pending().await,
        }
    };
    shard::task::spawn(crate::replica_fetcher::replication_duties(
        state.clone(),
        start.shutdown.clone(),
    ));
    let housekeeping = housekeeping(state.clone(), start.shutdown.clone());
    futures_lite::future::or(accepting, housekeeping).await;
    state.shutting_down.set(true);
    let quorum = state.quorum.borrow().clone();
    if let Some(quorum) = quorum {
        quorum.wait_stopped(QUORUM_STOP_LIMIT).await;
    }
    let (delayed_fetches, delayed_produces) = state.partitions.delayed().counters();
    tracing::debug!(shard = id.0, counters = ?state.partitions.counters().snapshot(), ?delayed_fetches, ?delayed_produces, "partition-layer counters");
    state.partitions.close_all().await;
    state.mesh.shut_down();
    tracing::info!(shard = id.0, "shard stopped");
}

/// Starts the metadata quorum on the controller shard and the task that publishes its image.
fn start_quorum(
    state: &Rc<ShardState>,
    config: &Arc<BrokerConfig>,
    quorum: &std::sync::Mutex<Option<QuorumStart>>,
) {
    let Some(quorum_start) = quorum.lock().ok().and_then(|mut slot| slot.take()) else {
        return;
    };
    let weak = Rc::downgrade(state);
    let stopped = move || weak.upgrade().is_none_or(|state| state.shutting_down.get());
    let quorum = crate::quorum::start(
        config.clone(),
        quorum_start.log,
        quorum_start.cluster_id,
        state.metadata().cluster_id.clone(),
        crate::quorum::migration::Migration::of(&state.metadata(), config.node_id),
        stopped,
    );
    state.quorum.replace(Some(quorum.clone()));
    shard::task::spawn(crate::control::quorum_publisher::run(
        Rc::downgrade(state),
        quorum,
    ));
}

async fn accept_loop(state: Rc<ShardState>, listener: shard::net::Listener) {
    let config = &state.config;
    let limits = ConnectionLimits {
        max_request_bytes: config.socket_request_max_bytes,
        max_in_flight: MAX_IN_FLIGHT_PER_CONNECTION,
        max_queued_response_bytes: config.connection_max_queued_response_bytes,
    };
    let registry = ConnectionRegistry::global(
        config.effective_max_connections(),
        config.effective_max_connections_per_ip(),
    );
    let request_budget = Rc::new(RequestBudget::new(config.queued_max_request_bytes));
    if state.id == crate::control::CONTROL_SHARD {
        shard::task::spawn(crate::memory_trim::return_freed_memory(registry.clone()));
    }
    let idle_timeout = (config.connections_max_idle_ms > 0)
        .then(|| Duration::from_millis(config.connections_max_idle_ms));
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let peer = stream.peer_addr().ok();
                let permit = match registry.admit(peer.map(|address| address.ip())) {
                    Ok(permit) => permit,
                    Err(refusal) => {
                        crate::warn_limited!(REFUSED_CONNECTIONS, ?peer, %refusal, "connection refused");
                        drop(stream);
                        continue;
                    }
                };
                let service = KafkaService {
                    state: state.clone(),
                    peer: peer.map(|address| address.ip()),
                };
                let shared = ConnectionShared {
                    request_budget: request_budget.clone(),
                    activity: Rc::default(),
                };
                shard::task::spawn(async move {
                    let activity = shared.activity.clone();
                    let serving = async {
                        Some(net::serve_connection(stream, &service, limits, shared).await)
                    };
                    let watching = async {
                        match idle_timeout {
                            Some(timeout) => close_when_idle(&activity, timeout).await,
                            None => std::future::pending().await,
                        }
                        None
                    };
                    match futures_lite::future::or(serving, watching).await {
                        Some(Ok(())) => {}
                        Some(Err(net::ConnectionError::Io(ref io))) if is_disconnect(io) => {}
                        // The service has logged why (rate-limited).
                        Some(Err(net::ConnectionError::ClosedByService)) => {}
                        Some(Err(error)) => {
                            crate::warn_limited!(BROKEN_CONNECTIONS, ?peer, %error, "connection closed")
                        }
                        None => tracing::debug!(
                            ?peer,
                            "idle connection closed (connections.max.idle.ms)"
                        ),
                    }
                    drop(permit);
                });
            }
            Err(error) => {
                let no_descriptors =
                    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                crate::warn_limited!(FAILED_ACCEPTS, %error, open_connections = registry.open_connections(), "accept failed");
                let backoff = if no_descriptors {
                    ACCEPT_BACKOFF_NO_DESCRIPTORS
                } else {
                    Duration::from_millis(10)
                };
                shard::task::sleep(backoff).await;
            }
        }
    }
}

/// Returns once `activity` has been idle for `timeout` (Kafka's `connections.max.idle.ms`): no complete
/// request, no response being prepared and nothing written. A partial frame does not count, so a client
/// that trickles a frame byte by byte is closed too.
async fn close_when_idle(activity: &ConnectionActivity, timeout: Duration) {
    loop {
        let idle = activity.idle_for(Instant::now());
        if idle >= timeout {
            return;
        }
        shard::task::sleep(timeout - idle).await;
    }
}

fn is_disconnect(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionReset | BrokenPipe | UnexpectedEof | ConnectionAborted
    )
}

async fn housekeeping(state: Rc<ShardState>, shutdown: Arc<AtomicBool>) {
    while !shutdown.load(Ordering::SeqCst) {
        shard::task::sleep(HOUSEKEEPING_INTERVAL).await;
        state
            .partitions
            .flush_if_due(shard::task::wall_clock_ms())
            .await;
    }
}

/// Answers the messages one peer shard sends, in its send order.
async fn serve_peer(state: Rc<ShardState>, peer: ShardId, receiver: Receiver<ShardMessage>) {
    while let Some(message) = receiver.recv().await {
        match message {
            ShardMessage::Produce { items, reply } => {
                // Dispatch (offset assignment) happens here, before the next message is read.
                let completion = state.partitions.start_produce(items).await;
                shard::task::spawn(async move {
                    let _ = reply.send(completion.await);
                });
            }
            ShardMessage::Fetch {
                items,
                max_bytes,
                reply,
            } => {
                let state = state.clone();
                shard::task::spawn(async move {
                    let _ = reply.send(state.partitions.read(items, max_bytes).await);
                });
            }
            ShardMessage::WaitForData {
                items,
                max_wait,
                mut reply,
            } => {
                let state = state.clone();
                shard::task::spawn(async move {
                    let waiting = state.partitions.wait_for_data(items, max_wait);
                    let completion = futures_lite::future::or(waiting, async {
                        reply.cancellation().await;
                        Completion::Expired
                    })
                    .await;
                    let _ = reply.send(completion);
                });
            }
            ShardMessage::ListOffsets { items, reply } => {
                let state = state.clone();
                shard::task::spawn(async move {
                    let _ = reply.send(state.partitions.list_offsets(items).await);
                });
            }
            ShardMessage::DeleteRecords { items, reply } => {
                let state = state.clone();
                shard::task::spawn(async move {
                    let _ = reply.send(state.partitions.delete_records(items).await);
                });
            }
            ShardMessage::WriteTxnMarkers { items, reply } => {
                let state = state.clone();
                shard::task::spawn(async move {
                    let _ = reply.send(state.partitions.write_markers(items).await);
                });
            }
            ShardMessage::DescribeProducers { items, reply } => {
                let _ = reply.send(state.partitions.describe_producers(&items));
            }
            ShardMessage::PartitionSizes { items, reply } => {
                let _ = reply.send(state.partitions.sizes(&items));
            }
            ShardMessage::Control { request, reply } => {
                let state = state.clone();
                shard::task::spawn(async move {
                    let response: ControlResponse = control(&state, request).await;
                    let _ = reply.send(response);
                });
            }
            ShardMessage::DescribeQuorum { reply } => {
                let _ = reply.send(state.quorum_status());
            }
            ShardMessage::ApplyMetadata { metadata, reply } => {
                // Applied before the next message from shard 0 is looked at.
                let mut applying = Box::pin(state.apply_metadata(metadata));
                let unopened = match poll_once(&mut applying).await {
                    Some(unopened) => unopened,
                    None => applying.await,
                };
                let _ = reply.send(unopened);
            }
            ShardMessage::Group { request, reply } => {
                let state = state.clone();
                shard::task::spawn(async move {
                    let _ = reply.send(crate::group_router::serve(&state, request).await);
                });
            }
            ShardMessage::Txn { request, reply } => {
                let state = state.clone();
                shard::task::spawn(async move {
                    let _ = reply.send(crate::txn_router::serve(&state, request).await);
                });
            }
        }
    }
    tracing::debug!(%peer, "peer channel closed");
}

/// The Kafka service of one connection.
struct KafkaService {
    state: Rc<ShardState>,
    peer: Option<std::net::IpAddr>,
}

impl Service for KafkaService {
    fn call(&self, frame: Bytes) -> DispatchFuture {
        match net::decode_header(frame) {
            Ok(mut header) => {
                header.client_host = self.peer;
                handlers::dispatch(self.state.clone(), header)
            }
            Err(error) => {
                crate::warn_limited!(BAD_HEADERS, peer = ?self.peer, %error, "bad request header; closing the connection");
                Box::pin(std::future::ready(Err(CloseConnection)))
            }
        }
    }
}
