//! What the brokers say about their cluster: Metadata without topics (cluster id, registered
//! brokers, as `kcat -L` asks) and DescribeQuorum (the active controller, as
//! `kafka-metadata-quorum.sh describe --status` asks: Metadata's controller id is a random live
//! broker in KRaft, not the active controller).

use std::time::Duration;

use oxbow_client::kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use oxbow_client::kafka_protocol::messages::{DescribeQuorumRequest, MetadataRequest, TopicName};
use oxbow_client::kafka_protocol::protocol::StrBytes;
use oxbow_client::{Client, ConnectionConfig};

/// The cluster as one broker described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// The cluster id; `None` if the broker did not send one.
    pub cluster_id: Option<String>,
    /// The metadata quorum's leader (the active controller) as DescribeQuorum names it; `None`
    /// while there is none (-1) or if the broker did not answer it.
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
    let quorum = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let mut controller_id = None;
    if let Some(&broker) = brokers.first() {
        let answer = client.send(broker, &quorum).await?;
        let leader = answer
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .filter(|p| p.error_code == 0)
            .map(|p| p.leader_id.0);
        controller_id = leader.filter(|id| *id >= 0);
    }
    Ok(ClusterView {
        cluster_id: response.cluster_id.as_ref().map(|s| s.to_string()),
        controller_id,
        brokers,
    })
}
