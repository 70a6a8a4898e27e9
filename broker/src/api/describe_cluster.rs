//! DescribeCluster (key 60): cluster id, controller and brokers (Admin `describeCluster`).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{str_bytes, Ctx};

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    _request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let broker = ctx.broker;
    // A listener this broker does not advertise lists no brokers, as in Kafka.
    let brokers = broker
        .advertised_endpoint(&ctx.listener.name)
        .map(|(host, port)| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(broker.node_id()))
                .with_host(str_bytes(host))
                .with_port(port)
                .with_rack(None)
                .with_is_fenced(false)
        })
        .into_iter()
        .collect();
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(broker.image().cluster_id.clone()))
        .with_controller_id(BrokerId(broker.node_id()))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(i32::MIN)
}
