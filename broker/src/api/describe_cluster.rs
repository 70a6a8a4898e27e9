//! DescribeCluster (key 60): cluster id, controller and brokers (Admin `describeCluster`).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{str_bytes, Ctx};

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    _request: DescribeClusterRequest,
) -> DescribeClusterResponse {
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
        .with_controller_id(BrokerId(broker.active_controller().unwrap_or(-1)))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(i32::MIN)
}
