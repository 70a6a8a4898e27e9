//! What the brokers say about their cluster: one Metadata request (no topics) answered by a
//! broker of the cluster, as `kafka-metadata-quorum.sh`/`kcat -L` would ask it.

use std::time::Duration;

use oxbow_client::kafka_protocol::messages::MetadataRequest;
use oxbow_client::{Client, ConnectionConfig};

/// The cluster as one broker described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// The cluster id; `None` if the broker did not send one.
    pub cluster_id: Option<String>,
    /// The active controller's node id; `None` while there is none (Kafka sends -1).
    pub controller_id: Option<i32>,
    /// Node ids of the registered brokers, sorted.
    pub brokers: Vec<i32>,
}

/// Asks the brokers at `addresses` (`host:port`, tried in order) for Metadata without topics.
/// Short timeouts: a broker that does not answer within seconds is not ready, and the
/// reconciler asks again at its next pass.
pub async fn describe_cluster(addresses: &[String]) -> Result<ClusterView, oxbow_client::Error> {
    let config = ConnectionConfig {
        client_id: Some("oxbow-operator".to_string()),
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(3),
        ..ConnectionConfig::default()
    };
    let client = Client::new(addresses.iter().cloned(), config);
    // An empty topic list (not null) asks for no topics; version 1+ carries the controller id.
    let request = MetadataRequest::default().with_topics(Some(Vec::new()));
    let response = client.metadata(&request).await?;
    let mut brokers: Vec<i32> = response.brokers.iter().map(|b| b.node_id.0).collect();
    brokers.sort_unstable();
    Ok(ClusterView {
        cluster_id: response.cluster_id.as_ref().map(|s| s.to_string()),
        controller_id: (response.controller_id.0 >= 0).then_some(response.controller_id.0),
        brokers,
    })
}
