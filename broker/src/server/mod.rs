//! The network layer: a listener per configured listener, one tokio task per connection,
//! graceful shutdown.

mod connection;
mod quotas;

use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::config::BrokerConfig;

pub use connection::serve_connection;
pub use quotas::{
    parse_overrides, ConnectionLimits, ConnectionPermit, ConnectionQuotas, TooManyConnections,
};

/// The listener a connection arrived on, as Kafka's `RequestContext` carries it: Metadata,
/// FindCoordinator and DescribeCluster answer with this listener's advertised address, so
/// internal and external clients each get an address they can reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerContext {
    /// Listener name, upper-cased (`PLAINTEXT`, `INTERNAL`, ...).
    pub name: String,
    /// Its security protocol from `listener.security.protocol.map` (always `PLAINTEXT` today).
    pub security_protocol: String,
}

/// A bound socket and the listener it serves.
#[derive(Debug)]
pub struct BoundListener {
    /// Which configured listener this is.
    pub context: Arc<ListenerContext>,
    /// The bound socket.
    pub socket: TcpListener,
}

/// Binds every client listener of `broker`'s config (`listeners` minus
/// `controller.listener.names`). Fails if any address cannot be bound, so a port conflict is
/// reported at start-up rather than later.
pub async fn bind(broker: &Broker) -> std::io::Result<Vec<BoundListener>> {
    let mut listeners = Vec::new();
    for l in broker.config().client_listeners() {
        let host = if l.host.is_empty() {
            "0.0.0.0"
        } else {
            l.host.as_str()
        };
        let listener = TcpListener::bind((host, l.port)).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot bind listener {}://{host}:{}: {e}", l.name, l.port),
            )
        })?;
        info!(listener = %l.name, address = %listener.local_addr()?, "listening");
        listeners.push(BoundListener {
            context: Arc::new(ListenerContext {
                name: l.name.clone(),
                security_protocol: broker.config().security_protocol_of(&l.name),
            }),
            socket: listener,
        });
    }
    Ok(listeners)
}

/// The limits of the broker's effective config, recomputed only when that config changes
/// (resolving override host names is not free).
struct LimitsCache {
    cached: Mutex<Option<(Arc<BrokerConfig>, ConnectionLimits)>>,
}

impl LimitsCache {
    fn get(&self, broker: &Broker) -> ConnectionLimits {
        let config = broker.effective_config();
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        match &*cached {
            Some((c, limits)) if Arc::ptr_eq(c, &config) => limits.clone(),
            _ => {
                let limits = ConnectionLimits::of(&config);
                *cached = Some((config, limits.clone()));
                limits
            }
        }
    }
}

/// Accepts connections on `listeners` until `shutdown` turns true, then stops accepting and
/// waits (briefly) for open connections to finish their current request. Connection limits
/// apply as in Kafka (see `quotas.rs`): at `max.connections` a listener stops accepting
/// until a connection closes; a connection over its address's `max.connections.per.ip` is
/// closed at once.
pub async fn serve(
    broker: Arc<Broker>,
    listeners: Vec<BoundListener>,
    mut shutdown: watch::Receiver<bool>,
) {
    let quotas = Arc::new(ConnectionQuotas::default());
    let limits = Arc::new(LimitsCache {
        cached: Mutex::new(None),
    });
    // Kafka's protected listener: the inter-broker one, when there are several.
    let inter_broker = broker
        .config()
        .inter_broker_listener_name
        .as_deref()
        .unwrap_or("PLAINTEXT")
        .to_ascii_uppercase();
    let several = listeners.len() > 1;
    let mut accept_tasks = JoinSet::new();
    for BoundListener { context, socket } in listeners {
        let broker = broker.clone();
        let mut shutdown = shutdown.clone();
        let quotas = quotas.clone();
        let limits = limits.clone();
        let protected = several && context.name == inter_broker;
        accept_tasks.spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = socket.accept() => match accepted {
                        Ok((stream, peer)) => {
                            // Waiting here for a free slot stops this listener accepting,
                            // as Kafka's acceptor does; clients wait in the backlog.
                            let permit = tokio::select! {
                                p = quotas.acquire(peer.ip(), protected, || limits.get(&broker)) => p,
                                _ = shutdown.wait_for(|stop| *stop) => break,
                            };
                            let permit = match permit {
                                Ok(p) => p,
                                Err(e) => {
                                    info!(%peer, listener = %context.name, "Rejected connection from {}, address already has the configured maximum of {} connections.", e.ip, e.max);
                                    drop(stream);
                                    continue;
                                }
                            };
                            let broker = broker.clone();
                            let shutdown = shutdown.clone();
                            let context = context.clone();
                            connections.spawn(async move {
                                serve_connection(broker, stream, peer, context, shutdown).await;
                                drop(permit);
                            });
                        }
                        // Out of file descriptors and similar: keep serving the others.
                        Err(e) => {
                            warn!(error = %e, "accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    },
                    _ = shutdown.changed() => break,
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
            let grace = tokio::time::sleep(std::time::Duration::from_secs(5));
            tokio::pin!(grace);
            loop {
                tokio::select! {
                    next = connections.join_next() => if next.is_none() { break },
                    _ = &mut grace => { connections.abort_all(); break }
                }
            }
        });
    }
    let _ = shutdown.wait_for(|stop| *stop).await;
    while accept_tasks.join_next().await.is_some() {}
}
