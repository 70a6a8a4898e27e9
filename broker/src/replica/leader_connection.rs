//! [`ClientLeaderConnection`]: the follower's [`LeaderConnection`] over TCP with
//! `oxbow-client`, to the leader's inter-broker listener.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{
    FetchRequest, FetchResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};
use oxbow_client::{Connection, ConnectionConfig};

use super::fetcher::{ConnectionError, LeaderConnection};
use crate::metadata::BoxFuture;

/// Fetch v12 is the first flexible version with `last_fetched_epoch`/`diverging_epoch`
/// (KIP-595); the follower asks for no less, so a leader that cannot serve it is reported
/// rather than silently fetched from without divergence checks.
const MIN_FETCH_VERSION: i16 = 12;

/// A connection to one leader broker, opened on first use and reopened after a failure
/// (`oxbow-client` closes a connection for good after a timeout or I/O error).
pub struct ClientLeaderConnection {
    address: String,
    config: ConnectionConfig,
    /// Extra time a Fetch may take beyond the request timeout: the leader holds it up to
    /// `replica.fetch.wait.max.ms`.
    fetch_wait: Duration,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

impl std::fmt::Debug for ClientLeaderConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientLeaderConnection")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl ClientLeaderConnection {
    /// A connection to the leader at `address` (`host:port` of its inter-broker listener),
    /// identifying as `client_id` (Kafka's followers use `broker-<id>-fetcher-0`), with
    /// `replica.socket.timeout.ms` as the request timeout and `replica.fetch.wait.max.ms`
    /// added to it for fetches.
    pub fn new(
        address: String,
        client_id: String,
        request_timeout_ms: u64,
        fetch_wait_max_ms: u64,
    ) -> Self {
        let config = ConnectionConfig {
            client_id: Some(client_id),
            request_timeout: Duration::from_millis(request_timeout_ms),
            ..ConnectionConfig::default()
        };
        ClientLeaderConnection {
            address,
            config,
            fetch_wait: Duration::from_millis(fetch_wait_max_ms),
            connection: tokio::sync::Mutex::new(None),
        }
    }

    async fn connection(&self) -> Result<Arc<Connection>, ConnectionError> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let c = Arc::new(
            Connection::connect(&self.address, self.config.clone())
                .await
                .map_err(|e| ConnectionError(e.to_string()))?,
        );
        *slot = Some(c.clone());
        Ok(c)
    }
}

impl LeaderConnection for ClientLeaderConnection {
    fn fetch(
        &self,
        request: FetchRequest,
    ) -> BoxFuture<'_, Result<FetchResponse, ConnectionError>> {
        Box::pin(async move {
            let c = self.connection().await?;
            // Topics are named by id from v13; without every id known, name them (v12).
            let by_name = request.topics.iter().any(|t| t.topic_id.is_nil());
            let version = c
                .negotiate::<FetchRequest>(by_name.then_some(MIN_FETCH_VERSION))
                .map_err(|e| ConnectionError(e.to_string()))?;
            if version < MIN_FETCH_VERSION {
                return Err(ConnectionError(format!(
                    "leader {} serves Fetch only up to v{version}; followers need v{MIN_FETCH_VERSION}+",
                    self.address
                )));
            }
            // The follower's id travels in `replica_id` up to v14 and in `replica_state`
            // from v15 (KIP-903); each field exists only in its versions.
            let mut request = request;
            if version >= 15 {
                request.replica_id = kafka_protocol::messages::BrokerId(-1);
            } else {
                request.replica_state = Default::default();
            }
            c.send_with_timeout(
                &request,
                Some(version),
                self.config.request_timeout + self.fetch_wait,
            )
            .await
            .map_err(|e| ConnectionError(e.to_string()))
        })
    }

    fn offset_for_leader_epoch(
        &self,
        request: OffsetForLeaderEpochRequest,
    ) -> BoxFuture<'_, Result<OffsetForLeaderEpochResponse, ConnectionError>> {
        Box::pin(async move {
            let c = self.connection().await?;
            c.send(&request, None)
                .await
                .map_err(|e| ConnectionError(e.to_string()))
        })
    }
}
