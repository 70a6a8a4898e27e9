//! DescribeCluster (key 60): cluster id, controller and brokers (Admin `describeCluster`).
//!
//! The controller id is a live broker to forward admin requests to: Kafka's KRaft brokers name a
//! random one, oxbow names the broker answering (see
//! [`crate::broker::Broker::controller_id_for_clients`]).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::ResponseError;

use super::{str_bytes, Ctx};

/// Kafka's `EndpointType` ids (KIP-919): 1 brokers, 2 controllers.
const ENDPOINT_TYPE_BROKER: i8 = 1;
const ENDPOINT_TYPE_CONTROLLER: i8 = 2;

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    // A broker describes brokers only: the controllers are described by a controller's own
    // endpoint (`--bootstrap-controller`), which Oxbow's control channel does not serve.
    // Kafka's AuthHelper answers the same codes.
    let endpoint_type = request.endpoint_type;
    if endpoint_type != ENDPOINT_TYPE_BROKER {
        let (error, message) = if endpoint_type == ENDPOINT_TYPE_CONTROLLER {
            (
                ResponseError::MismatchedEndpointType,
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint \
                 of type CONTROLLER"
                    .to_string(),
            )
        } else {
            (
                ResponseError::UnsupportedEndpointType,
                format!("Unsupported endpoint type {endpoint_type}"),
            )
        };
        // (v0 has no endpoint type: it always asks for brokers.)
        return DescribeClusterResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(message)))
            .with_endpoint_type(ENDPOINT_TYPE_BROKER);
    }
    let broker = ctx.broker;
    let image = broker.image();
    // A listener this broker does not advertise lists no brokers, as in Kafka.
    let brokers = broker
        .brokers_on(&image, &ctx.listener.name)
        .into_iter()
        .map(|(id, host, port, rack)| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(id))
                .with_host(str_bytes(host))
                .with_port(port)
                .with_rack(rack.map(str_bytes))
                .with_is_fenced(false)
        })
        .collect();
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(image.cluster_id.clone()))
        .with_controller_id(BrokerId(broker.controller_id_for_clients()))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(i32::MIN)
}
