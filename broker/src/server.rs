//! One shard's life: join the mesh, open its partitions, serve Kafka connections on its own
//! SO_REUSEPORT listener, answer other shards' messages, and shut down cleanly.

use crate::config::BrokerConfig;
use crate::control::{control, ControlResponse};
use crate::handlers;
use crate::messages::ShardMessage;
use crate::metadata::ClusterMetadata;
use crate::partitions::{self, apply_metadata};
use crate::shard_state::ShardState;
use bytes::Bytes;
use futures_lite::future::poll_once;
use net::{CloseConnection, ConnectionLimits, DispatchFuture, Service};
use shard::dma::DmaFileSystem;
use shard::mesh::Receiver;
use shard::{MeshBuilder, ShardId};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use storage::BatchCache;

/// How often a shard looks at the shutdown flag and time-based flushes (group deadlines have their own
/// timer, `group::run_timer`).
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(100);

/// Most requests one connection may have awaiting their responses.
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 32;

pub struct ShardStart {
    pub config: Arc<BrokerConfig>,
    pub metadata: Arc<ClusterMetadata>,
    pub mesh: MeshBuilder<ShardMessage>,
    pub clean_start: bool,
    pub shutdown: Arc<AtomicBool>,
    /// Set by each shard once it listens (tests and the start-up log use it).
    pub ready: Arc<std::sync::atomic::AtomicUsize>,
}

/// The body of shard `id`'s executor. Returns after a clean shutdown.
pub async fn run_shard(id: ShardId, start: ShardStart) {
    let (mesh, receivers) = start.mesh.join().await;
    let direct = start.config.direct_io
        && DmaFileSystem::prepare(&start.config.data_dir, id.0)
            .await
            .unwrap_or(false);
    let state = Rc::new(ShardState {
        id,
        config: start.config.clone(),
        mesh,
        metadata: RefCell::new(Arc::new(ClusterMetadata::default())),
        partitions: RefCell::new(HashMap::new()),
        cache: Rc::new(BatchCache::new(start.config.batch_cache_bytes)),
        fs: DmaFileSystem { direct },
        clean_start: start.clean_start,
        control_lock: async_lock::Mutex::new(()),
        shutting_down: Cell::new(false),
        fetch_sessions: Default::default(),
        groups: Default::default(),
    });
    // Bind first (connections wait in the backlog until the accept loop runs): the narrower the gap
    // after main's check that the port is free, the less room for another process to slip in.
    let listener = match shard::net::Listener::bind(start.config.listen) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(address = %start.config.listen, %error, "cannot listen");
            start.shutdown.store(true, Ordering::SeqCst);
            return;
        }
    };
    apply_metadata(&state, start.metadata.clone()).await;
    for (peer, receiver) in receivers {
        shard::task::spawn(serve_peer(state.clone(), peer, receiver));
    }
    tracing::info!(
        shard = id.0,
        partitions = state.partitions.borrow().len(),
        direct_io = direct,
        "shard ready"
    );
    start.ready.fetch_add(1, Ordering::SeqCst);
    let accepting = accept_loop(state.clone(), listener);
    shard::task::spawn(crate::group::run_timer(state.clone()));
    let housekeeping = housekeeping(state.clone(), start.shutdown.clone());
    futures_lite::future::or(accepting, housekeeping).await;
    state.shutting_down.set(true);
    partitions::close_all(&state).await;
    tracing::info!(shard = id.0, "shard stopped");
}

async fn accept_loop(state: Rc<ShardState>, listener: shard::net::Listener) {
    let limits = ConnectionLimits {
        max_request_bytes: state.config.socket_request_max_bytes,
        max_in_flight: MAX_IN_FLIGHT_PER_CONNECTION,
    };
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let peer = stream.peer_addr().ok();
                let service = KafkaService {
                    state: state.clone(),
                    peer: peer.map(|address| address.ip()),
                };
                shard::task::spawn(async move {
                    if let Err(error) = net::serve_connection(stream, &service, limits).await {
                        match error {
                            net::ConnectionError::Io(ref io) if is_disconnect(io) => {}
                            error => tracing::warn!(?peer, %error, "connection closed"),
                        }
                    }
                });
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                shard::task::sleep(Duration::from_millis(10)).await;
            }
        }
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
        let now = crate::shard_state::now_ms();
        let partitions: Vec<_> = state.partitions.borrow().values().cloned().collect();
        for partition in partitions {
            if let Err(error) = partition.log.flush_if_due(now).await {
                tracing::error!(topic = %partition.topic, partition = partition.index, %error, "periodic flush failed");
            }
        }
    }
}

/// Answers the messages one peer shard sends, in its send order.
async fn serve_peer(state: Rc<ShardState>, peer: ShardId, receiver: Receiver<ShardMessage>) {
    while let Some(message) = receiver.recv().await {
        match message {
            ShardMessage::Produce { items, reply } => {
                // Dispatch (offset assignment) happens here, before the next message is read.
                let completion = partitions::start_produce(&state, items).await;
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
                    let _ = reply.send(partitions::read(&state, items, max_bytes, true).await);
                });
            }
            ShardMessage::WaitForData {
                items,
                max_wait,
                mut reply,
            } => {
                let state = state.clone();
                shard::task::spawn(async move {
                    let waiting = partitions::wait_for_data(&state, &items, max_wait);
                    futures_lite::future::or(waiting, async {
                        reply.cancellation().await;
                    })
                    .await;
                    let _ = reply.send(());
                });
            }
            ShardMessage::ListOffsets { items, reply } => {
                let state = state.clone();
                shard::task::spawn(async move {
                    let _ = reply.send(partitions::list_offsets(&state, items).await);
                });
            }
            ShardMessage::Control { request, reply } => {
                let state = state.clone();
                shard::task::spawn(async move {
                    let response: ControlResponse = control(&state, request).await;
                    let _ = reply.send(response);
                });
            }
            ShardMessage::ApplyMetadata { metadata, reply } => {
                // Applied before the next message from shard 0 is looked at.
                let mut applying = Box::pin(apply_metadata(&state, metadata));
                if poll_once(&mut applying).await.is_none() {
                    applying.await;
                }
                let _ = reply.send(());
            }
            ShardMessage::Invoke(task) => {
                shard::task::spawn(task(state.clone()));
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
                tracing::warn!(%error, "bad request header; closing the connection");
                Box::pin(std::future::ready(Err(CloseConnection)))
            }
        }
    }
}
