//! DescribeCluster (key 60), versions 0–2: this broker, as the whole cluster and its controller.

use super::metadata::{authorized_operations, ALL_CLUSTER_OPERATIONS};
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
            let mut broker = DescribeClusterBroker::default();
            broker.broker_id = BrokerId(state.config.node_id);
            broker.host = str_bytes(state.config.advertise_host.clone());
            broker.port = state.config.advertise_port as i32;
            response.endpoint_type = if version >= 1 {
                request.endpoint_type
            } else {
                ENDPOINT_BROKERS
            };
            response.cluster_id = str_bytes(state.metadata().cluster_id.clone());
            response.controller_id = BrokerId(state.config.node_id);
            response.brokers = vec![broker];
            response.cluster_authorized_operations = authorized_operations(
                request.include_cluster_authorized_operations,
                ALL_CLUSTER_OPERATIONS,
            );
            response
        },
    )
}
