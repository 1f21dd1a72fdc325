//! In-process tests: one shard's handlers, partitions and group coordinator, without glommio, on std
//! files in a temporary directory and on the manual clock of a `shard::Simulation` — a long poll of
//! seconds runs in no real time, deterministically. Requests go through `handlers::dispatch` as encoded
//! frames, exactly as a connection hands them over, and responses are decoded as a client would.
//!
//! The real binary with real clients is the integration suite's job (`tests/integration/`); these tests
//! pin the logic down fast and let a test control time.

mod fetch_from_follower;
mod groups;
mod offsets;
mod produce_fetch;
mod read_committed;
mod replication;
mod retention;
mod transactions;
mod txn_offsets;

use crate::config::{BrokerConfig, Cli};
use crate::messages::ShardMessage;
use crate::metadata::ClusterMetadata;
use crate::partition::manager::{PartitionManager, PartitionResources};
use crate::shard_state::ShardState;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use shard::files::ShardFileSystem;
use shard::simulation::TaskHandle;
use shard::{MeshBuilder, ShardId, Simulation};
use std::rc::Rc;
use std::sync::Arc;
use storage::io::StdFileSystem;
use storage::{BatchCache, SegmentFilePool};

/// One shard of a broker, in a simulation.
pub struct TestShard {
    pub simulation: Simulation,
    pub state: Rc<ShardState>,
    correlation_id: i32,
    _data_dir: tempfile::TempDir,
}

impl TestShard {
    /// A fresh single-shard broker; `adjust` may change its configuration first.
    pub fn start(adjust: impl FnOnce(&mut BrokerConfig)) -> TestShard {
        let data_dir = tempfile::tempdir().expect("temporary directory");
        let mut simulation = Simulation::new();
        let mut config = BrokerConfig::from_cli(Cli {
            data_dir: Some(data_dir.path().to_path_buf()),
            shards: Some(1),
            ..Cli::default()
        })
        .expect("valid configuration");
        config.groups.offsets_topic_partitions = 1;
        adjust(&mut config);
        let config = Arc::new(config);
        let (mesh, _receivers) = MeshBuilder::<ShardMessage>::new(1)
            .expect("mesh")
            .join(ShardId(0));
        let files = ShardFileSystem::Std(StdFileSystem);
        let partitions = PartitionManager::new(PartitionResources {
            config: config.clone(),
            files,
            cache: Rc::new(BatchCache::new(config.batch_cache_bytes)),
            segment_files: Rc::new(SegmentFilePool::new(files, 64)),
            clean_start: false,
        });
        let state = Rc::new(ShardState::new(ShardId(0), config, mesh, partitions));
        crate::txn_router::install_services(&state);
        state.start_timers();
        let metadata = Arc::new(ClusterMetadata::new_cluster());
        simulation.block_on(state.apply_metadata(metadata));
        TestShard {
            simulation,
            state,
            correlation_id: 0,
            _data_dir: data_dir,
        }
    }

    /// Sends `request` (API `key`, `version`) through the handlers; the task completes with the
    /// response frame's bytes (None: no response, as for acks=0), once the simulation runs it.
    pub fn send<Request: Encodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Request,
    ) -> TaskHandle<Option<Bytes>> {
        self.correlation_id += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = key as i16;
        header.request_api_version = version;
        header.correlation_id = self.correlation_id;
        header.client_id = Some(StrBytes::from_static_str("in-process-test"));
        let mut frame = BytesMut::new();
        header
            .encode(&mut frame, key.request_header_version(version))
            .expect("encodable header");
        request
            .encode(&mut frame, version)
            .expect("encodable request");
        let decoded = net::decode_header(frame.freeze()).expect("decodable header");
        let state = self.state.clone();
        self.simulation.spawn(async move {
            let dispatch = crate::handlers::dispatch(state, decoded);
            let response = dispatch.await.ok()?.await?;
            let mut bytes = BytesMut::new();
            for part in response.parts {
                bytes.extend_from_slice(&part);
            }
            Some(bytes.freeze())
        })
    }

    /// Sends `request` and runs the simulation (clock frozen) until its response is there.
    pub fn call<Request: Encodable, Response: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Request,
    ) -> Response {
        let task = self.send(key, version, request);
        self.simulation.run_until_stalled();
        let frame = task
            .take_output()
            .expect("the request completes without the clock moving")
            .expect("a response");
        decode_response(key, version, frame)
    }
}

/// Decodes a response frame (length prefix, header, body).
pub fn decode_response<Response: Decodable>(key: ApiKey, version: i16, frame: Bytes) -> Response {
    let mut body = frame.slice(4..);
    ResponseHeader::decode(&mut body, key.response_header_version(version))
        .expect("decodable response header");
    Response::decode(&mut body, version).expect("decodable response")
}
