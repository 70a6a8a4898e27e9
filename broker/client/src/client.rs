//! A cluster seen from bootstrap addresses: Metadata from whichever bootstrap broker answers,
//! and one cached connection per broker id, reopened after it fails.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::Request;
use tracing::debug;

use crate::connection::{Connection, ConnectionConfig};
use crate::error::{Error, Result};

/// Connections to the brokers of one cluster, found from bootstrap addresses
/// (`bootstrap.servers`).
///
/// Connections are opened on first use and cached by broker id; one that has closed (after
/// a timeout, a broker restart, ...) is replaced by a new one on the next request. Requests
/// are never retried here: whether a request is safe to repeat is the caller's knowledge.
pub struct Client {
    bootstrap: Vec<String>,
    config: ConnectionConfig,
    /// Broker id -> `host:port`, from the latest Metadata response.
    brokers: Mutex<HashMap<i32, String>>,
    /// Open connections by broker id; `None` is the bootstrap connection.
    connections: tokio::sync::Mutex<HashMap<Option<i32>, Arc<Connection>>>,
}

impl Client {
    /// A client for the cluster behind `bootstrap` (`host:port` each); nothing is connected
    /// until the first request.
    pub fn new(
        bootstrap: impl IntoIterator<Item = impl Into<String>>,
        config: ConnectionConfig,
    ) -> Client {
        Client {
            bootstrap: bootstrap.into_iter().map(Into::into).collect(),
            config,
            brokers: Mutex::new(HashMap::new()),
            connections: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Sends `request` (a Metadata request of the caller's making, e.g. for some topics) to
    /// a bootstrap broker, trying the addresses in order until one answers, and remembers
    /// the brokers it lists. `Err` is the last address's failure (or
    /// [`Error::Disconnected`] if there are no bootstrap addresses).
    pub async fn metadata(&self, request: &MetadataRequest) -> Result<MetadataResponse> {
        let mut last = None;
        // A connection that worked before is tried first, then each address in order.
        let cached = self.cached(None).await;
        let candidates = cached
            .into_iter()
            .map(Candidate::Open)
            .chain(self.bootstrap.iter().map(|a| Candidate::Address(a.clone())));
        for candidate in candidates {
            let connection = match candidate {
                Candidate::Open(c) => c,
                Candidate::Address(addr) => {
                    match Connection::connect(&addr, self.config.clone()).await {
                        Ok(c) => {
                            let c = Arc::new(c);
                            self.connections.lock().await.insert(None, c.clone());
                            c
                        }
                        Err(e) => {
                            debug!(peer = %addr, error = %e, "bootstrap broker unavailable");
                            last = Some(e);
                            continue;
                        }
                    }
                }
            };
            match connection.send(request, None).await {
                Ok(response) => {
                    let mut brokers = self.brokers.lock().unwrap_or_else(|p| p.into_inner());
                    for b in &response.brokers {
                        brokers.insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
                    }
                    return Ok(response);
                }
                Err(e) => {
                    debug!(peer = %connection.peer(), error = %e, "metadata request failed");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Disconnected {
            peer: String::new(),
            api: None,
            reason: "no bootstrap addresses".to_string(),
        }))
    }

    /// `host:port` of broker `node_id` as the latest Metadata listed it.
    pub fn broker_address(&self, node_id: i32) -> Option<String> {
        self.brokers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&node_id)
            .cloned()
    }

    /// An open connection to broker `node_id`: the cached one if it is still open, else a
    /// new one (fetching Metadata first if the broker is not known yet, or if connecting to
    /// its known address fails, since it may have moved). [`Error::UnknownNode`] if Metadata
    /// does not list it.
    pub async fn connection(&self, node_id: i32) -> Result<Arc<Connection>> {
        if let Some(c) = self.cached(Some(node_id)).await {
            return Ok(c);
        }
        let known = self.broker_address(node_id);
        let first_try = match known {
            Some(addr) => Some(Connection::connect(&addr, self.config.clone()).await),
            None => None,
        };
        let connection = match first_try {
            Some(Ok(c)) => c,
            other => {
                let response = self
                    .metadata(&MetadataRequest::default().with_topics(Some(Vec::new())))
                    .await;
                let addr = self.broker_address(node_id);
                match (addr, other) {
                    (Some(addr), _) => Connection::connect(&addr, self.config.clone()).await?,
                    (None, Some(Err(e))) => return Err(e),
                    (None, _) => {
                        response?;
                        return Err(Error::UnknownNode {
                            peer: self.bootstrap.join(","),
                            node_id,
                        });
                    }
                }
            }
        };
        let connection = Arc::new(connection);
        self.connections
            .lock()
            .await
            .insert(Some(node_id), connection.clone());
        Ok(connection)
    }

    /// Sends `request` to broker `node_id` over [`Client::connection`] at the negotiated
    /// version. A failure that loses the connection drops it from the cache, so the next
    /// call reconnects; the request itself is not retried.
    pub async fn send<Req: Request>(&self, node_id: i32, request: &Req) -> Result<Req::Response> {
        let connection = self.connection(node_id).await?;
        let result = connection.send(request, None).await;
        if let Err(e) = &result {
            if e.is_connection_lost() {
                self.forget(Some(node_id), &connection).await;
            }
        }
        result
    }

    async fn cached(&self, key: Option<i32>) -> Option<Arc<Connection>> {
        let mut connections = self.connections.lock().await;
        match connections.get(&key) {
            Some(c) if !c.is_closed() => Some(c.clone()),
            Some(_) => {
                connections.remove(&key);
                None
            }
            None => None,
        }
    }

    async fn forget(&self, key: Option<i32>, connection: &Arc<Connection>) {
        let mut connections = self.connections.lock().await;
        if connections
            .get(&key)
            .is_some_and(|c| Arc::ptr_eq(c, connection))
        {
            connections.remove(&key);
        }
    }
}

enum Candidate {
    Open(Arc<Connection>),
    Address(String),
}
