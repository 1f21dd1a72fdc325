//! DescribeCluster (key 60), versions 0–2: the cluster's live brokers with their racks, and the
//! controller for topic changes (see `ClusterMetadata::listed_brokers` and `metadata::controller_id`).

use super::metadata::{authorized_operations, controller_id, ALL_CLUSTER_OPERATIONS};
use super::{simple, str_bytes};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 2);

/// Endpoint types (v1+): 1 = brokers, 2 = controllers.
const ENDPOINT_BROKERS: i8 = 1;

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: DescribeClusterRequest, version| async move {
            let mut response = DescribeClusterResponse::default();
            if version >= 1
                && request.endpoint_type != ENDPOINT_BROKERS
                && request.endpoint_type != 2
            {
                response.error_code = ResponseError::UnsupportedEndpointType.code();
                response.error_message = Some(str_bytes(format!(
                    "unknown endpoint type {}",
                    request.endpoint_type
                )));
                return response;
            }
            let metadata = state.metadata();
            response.endpoint_type = if version >= 1 {
                request.endpoint_type
            } else {
                ENDPOINT_BROKERS
            };
            response.cluster_id = str_bytes(metadata.cluster_id.clone());
            let listed = metadata.listed_brokers(&state.config);
            response.controller_id = BrokerId(controller_id(&state.config, &metadata, &listed));
            response.brokers = listed
                .into_iter()
                .map(|endpoint| {
                    let mut broker = DescribeClusterBroker::default();
                    broker.broker_id = BrokerId(endpoint.node_id);
                    broker.host = str_bytes(endpoint.host);
                    broker.port = endpoint.port as i32;
                    broker.rack = endpoint.rack.map(str_bytes);
                    broker
                })
                .collect();
            response.cluster_authorized_operations = authorized_operations(
                request.include_cluster_authorized_operations,
                ALL_CLUSTER_OPERATIONS,
            );
            response
        },
    )
}
