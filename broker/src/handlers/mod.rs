//! Kafka API handlers: one file per API, each with its supported version range beside it, and the one
//! registry ([`APIS`]) that routing and ApiVersions both read.
//!
//! A handler gets the shard's state and the decoded request header (body still as bytes) and returns a
//! [`DispatchFuture`]: most handlers finish dispatching at once and do their work in the response stage
//! ([`respond_later`]); Produce does its ordering-sensitive work in the dispatch stage.

pub use crate::protocol::str_bytes;
use crate::shard_state::ShardState;
use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable};
use net::{CloseConnection, DecodedHeader, DispatchFuture, Frame, ResponseFuture};
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;
use tracing::Instrument;

/// Lines a client can trigger at will are rate-limited (see `log_limit`).
static BAD_REQUESTS: crate::log_limit::LogLimiter =
    crate::log_limit::LogLimiter::new(Duration::from_secs(10), 5);

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_quorum;
pub mod describe_transactions;
pub mod elect_leaders;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;
pub mod txn_offset_commit;
pub mod write_txn_markers;

pub type Handler = fn(Rc<ShardState>, DecodedHeader) -> DispatchFuture;

/// An API this broker serves, with the versions it accepts.
pub struct ApiEntry {
    pub key: ApiKey,
    pub min_version: i16,
    pub max_version: i16,
    pub handle: Handler,
    /// Decodes the request body (under the decode guard) and drops it: what the fuzz target and the
    /// decoding tests drive, without a shard.
    pub check_decode: fn(&DecodedHeader) -> Result<(), net::DecodeError>,
}

macro_rules! api {
    ($key:ident, $module:ident, $request:ident) => {
        ApiEntry {
            key: ApiKey::$key,
            min_version: $module::VERSIONS.0,
            max_version: $module::VERSIONS.1,
            handle: $module::handle,
            check_decode: |header| {
                net::decode_request::<kafka_protocol::messages::$request>(
                    &header.body,
                    header.api_version,
                )
                .map(drop)
            },
        }
    };
}

/// Every API this broker serves. ApiVersions answers from this list.
pub const APIS: &[ApiEntry] = &[
    api!(Produce, produce, ProduceRequest),
    api!(Fetch, fetch, FetchRequest),
    api!(ListOffsets, list_offsets, ListOffsetsRequest),
    api!(
        OffsetForLeaderEpoch,
        offset_for_leader_epoch,
        OffsetForLeaderEpochRequest
    ),
    api!(Metadata, metadata, MetadataRequest),
    api!(OffsetCommit, offset_commit, OffsetCommitRequest),
    api!(OffsetFetch, offset_fetch, OffsetFetchRequest),
    api!(FindCoordinator, find_coordinator, FindCoordinatorRequest),
    api!(JoinGroup, join_group, JoinGroupRequest),
    api!(Heartbeat, heartbeat, HeartbeatRequest),
    api!(LeaveGroup, leave_group, LeaveGroupRequest),
    api!(SyncGroup, sync_group, SyncGroupRequest),
    api!(DescribeGroups, describe_groups, DescribeGroupsRequest),
    api!(ListGroups, list_groups, ListGroupsRequest),
    api!(ApiVersions, api_versions, ApiVersionsRequest),
    api!(CreateTopics, create_topics, CreateTopicsRequest),
    api!(DeleteTopics, delete_topics, DeleteTopicsRequest),
    api!(InitProducerId, init_producer_id, InitProducerIdRequest),
    api!(
        AddPartitionsToTxn,
        add_partitions_to_txn,
        AddPartitionsToTxnRequest
    ),
    api!(AddOffsetsToTxn, add_offsets_to_txn, AddOffsetsToTxnRequest),
    api!(EndTxn, end_txn, EndTxnRequest),
    api!(DescribeConfigs, describe_configs, DescribeConfigsRequest),
    api!(CreatePartitions, create_partitions, CreatePartitionsRequest),
    api!(DeleteGroups, delete_groups, DeleteGroupsRequest),
    api!(OffsetDelete, offset_delete, OffsetDeleteRequest),
    api!(DescribeCluster, describe_cluster, DescribeClusterRequest),
    api!(DescribeQuorum, describe_quorum, DescribeQuorumRequest),
    api!(DeleteRecords, delete_records, DeleteRecordsRequest),
    api!(AlterConfigs, alter_configs, AlterConfigsRequest),
    api!(DescribeLogDirs, describe_log_dirs, DescribeLogDirsRequest),
    api!(
        IncrementalAlterConfigs,
        incremental_alter_configs,
        IncrementalAlterConfigsRequest
    ),
    api!(WriteTxnMarkers, write_txn_markers, WriteTxnMarkersRequest),
    api!(
        DescribeProducers,
        describe_producers,
        DescribeProducersRequest
    ),
    api!(TxnOffsetCommit, txn_offset_commit, TxnOffsetCommitRequest),
    api!(
        DescribeTransactions,
        describe_transactions,
        DescribeTransactionsRequest
    ),
    api!(ListTransactions, list_transactions, ListTransactionsRequest),
    api!(ElectLeaders, elect_leaders, ElectLeadersRequest),
    api!(
        AlterPartitionReassignments,
        alter_partition_reassignments,
        AlterPartitionReassignmentsRequest
    ),
    api!(
        ListPartitionReassignments,
        list_partition_reassignments,
        ListPartitionReassignmentsRequest
    ),
];

/// The registry entry of `key`, if this broker serves it.
pub fn entry(key: ApiKey) -> Option<&'static ApiEntry> {
    APIS.iter().find(|entry| entry.key == key)
}

/// Routes a request to its handler inside a `request` span (API, version, client id, correlation id, shard)
/// that covers both its dispatch and its response stage, so every line a request logs names it.
///
/// The span is at DEBUG level: with the default INFO filter it is disabled, costs one callsite check and
/// adds no allocation; `RUST_LOG=broker=debug` (or a subscriber that records spans) turns it on.
pub fn dispatch(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    let span = tracing::debug_span!(
        "request",
        api = ?header.api_key,
        version = header.api_version,
        client_id = header.client_id.as_deref().unwrap_or(""),
        correlation_id = header.correlation_id,
        shard = state.id.0,
    );
    if span.is_disabled() {
        return route(state, header);
    }
    let dispatching = {
        let _entered = span.enter();
        route(state, header)
    };
    Box::pin(
        async move {
            let response = dispatching.await?;
            let response_span = tracing::Span::current();
            let response: ResponseFuture = Box::pin(response.instrument(response_span));
            Ok(response)
        }
        .instrument(span),
    )
}

/// Routes a request to its handler; unknown APIs and versions close the connection with a log line,
/// except ApiVersions, which answers an unknown version in the v0 format (clients then pick a version).
fn route(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    let Some(entry) = entry(header.api_key) else {
        crate::warn_limited!(BAD_REQUESTS, api = ?header.api_key, version = header.api_version, client = ?header.client_id, "unsupported API; closing the connection");
        return close();
    };
    if header.api_version < entry.min_version || header.api_version > entry.max_version {
        if header.api_key == ApiKey::ApiVersions {
            return api_versions::unsupported_version(header);
        }
        crate::warn_limited!(
            BAD_REQUESTS,
            api = ?header.api_key,
            version = header.api_version,
            supported = ?(entry.min_version..=entry.max_version),
            client = ?header.client_id,
            "unsupported API version; closing the connection"
        );
        return close();
    }
    (entry.handle)(state, header)
}

pub fn close() -> DispatchFuture {
    Box::pin(std::future::ready(Err(CloseConnection)))
}

/// Decodes a request body under the decode guard (`net::decode_guard`: an element count the frame cannot
/// hold is refused instead of reserving memory); a malformed one is logged and closes the connection (as
/// Kafka does).
pub fn decode<R: Decodable>(header: &DecodedHeader) -> Result<R, CloseConnection> {
    net::decode_request::<R>(&header.body, header.api_version).map_err(|error| {
        crate::warn_limited!(BAD_REQUESTS, api = ?header.api_key, version = header.api_version, client = ?header.client_id, %error, "malformed request; closing the connection");
        CloseConnection
    })
}

/// Encodes a response frame for `header`'s request.
pub fn encode<M: Encodable>(header: &DecodedHeader, body: &M) -> Option<Bytes> {
    match net::encode_response(
        header.api_key,
        header.api_version,
        header.correlation_id,
        body,
    ) {
        Ok(frame) => Some(frame),
        Err(error) => {
            tracing::error!(api = ?header.api_key, version = header.api_version, %error, "cannot encode response");
            None
        }
    }
}

/// A handler whose dispatch completes at once: `work` runs in the response stage.
pub fn respond_later<F>(work: F) -> DispatchFuture
where
    F: Future<Output = Option<Bytes>> + 'static,
{
    respond_later_frame(async move { work.await.map(Frame::from) })
}

/// As [`respond_later`], for a response made of several buffers (see `net::splice`).
pub fn respond_later_frame<F>(work: F) -> DispatchFuture
where
    F: Future<Output = Option<Frame>> + 'static,
{
    let response: ResponseFuture = Box::pin(work);
    Box::pin(std::future::ready(Ok(response)))
}

/// Decodes the request, then runs `work` in the response stage and encodes what it returns.
/// A response that cannot be encoded is logged and sends nothing (the client times out and retries).
pub fn simple<R, M, F, W>(state: Rc<ShardState>, header: DecodedHeader, work: W) -> DispatchFuture
where
    R: Decodable + 'static,
    M: Encodable,
    F: Future<Output = M> + 'static,
    W: FnOnce(Rc<ShardState>, R, i16) -> F + 'static,
{
    let request = match decode::<R>(&header) {
        Ok(request) => request,
        Err(_) => return close(),
    };
    respond_later(async move {
        let response = work(state, request, header.api_version).await;
        encode(&header, &response)
    })
}

/// Per topic, each partition's error (None: no error yet), in request order.
pub type PartitionErrors = Vec<(
    String,
    Vec<(i32, Option<kafka_protocol::error::ResponseError>)>,
)>;

/// A topic name as the protocol carries it.
pub fn topic_name(name: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(kafka_protocol::protocol::StrBytes::from_string(
        name.to_string(),
    ))
}
