//! Connection limits as Apache Kafka's `ConnectionQuotas` (SocketServer) applies them.
//!
//! - `max.connections` (broker-wide): when every slot is taken, the acceptor waits for a
//!   connection to close before it serves the next one; clients queue in the listen backlog
//!   and are not refused. Connections on the inter-broker listener do not count against it
//!   while the broker has more than one listener (Kafka's "protected listener").
//! - `max.connections.per.ip`, `max.connections.per.ip.overrides` (`host:count,...`): a
//!   connection beyond its address's limit is closed right after it is accepted.
//!
//! Limits are read from the effective config at every accept, so `kafka-configs.sh
//! --entity-type brokers --alter` of these (cluster-wide dynamic) keys applies to new
//! connections at once. The per-listener `listener.name.<l>.max.connections` and
//! `max.connection.creation.rate` are not applied (the config warns when they are set).

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::config::BrokerConfig;

/// The limits in force for one accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// `max.connections`.
    pub max_connections: usize,
    /// `max.connections.per.ip`.
    pub max_per_ip: usize,
    /// `max.connections.per.ip.overrides`, host names resolved.
    pub per_ip_overrides: HashMap<IpAddr, usize>,
}

impl ConnectionLimits {
    /// The limits of `config`. Override entries whose host does not resolve are skipped with
    /// a warning (Kafka resolves them when the config is applied).
    pub fn of(config: &BrokerConfig) -> ConnectionLimits {
        let int = |key: &str| {
            config
                .value(key)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .map_or(usize::MAX, |n| {
                    usize::try_from(n.max(0)).unwrap_or(usize::MAX)
                })
        };
        let raw = config
            .value("max.connections.per.ip.overrides")
            .unwrap_or_default();
        let mut per_ip_overrides = HashMap::new();
        for (host, count) in parse_overrides(&raw).unwrap_or_default() {
            match (host.as_str(), 0u16).to_socket_addrs() {
                Ok(addrs) => {
                    for a in addrs {
                        per_ip_overrides.insert(a.ip(), count);
                    }
                }
                Err(e) => {
                    tracing::warn!(%host, error = %e, "max.connections.per.ip.overrides: cannot resolve host; entry ignored")
                }
            }
        }
        ConnectionLimits {
            max_connections: int("max.connections"),
            max_per_ip: int("max.connections.per.ip"),
            per_ip_overrides,
        }
    }

    fn max_for(&self, ip: IpAddr) -> usize {
        self.per_ip_overrides
            .get(&ip)
            .copied()
            .unwrap_or(self.max_per_ip)
    }
}

/// Parses `max.connections.per.ip.overrides` (`host:count` pairs separated by commas; an
/// IPv6 host is written in brackets). `Err` names what is wrong, for start-up validation.
pub fn parse_overrides(raw: &str) -> Result<Vec<(String, usize)>, String> {
    let mut out = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (host, count) = entry
            .rsplit_once(':')
            .ok_or_else(|| format!("'{entry}' is not of the form host:count"))?;
        let count: usize = count
            .trim()
            .parse()
            .map_err(|_| format!("'{entry}': the count is not a non-negative number"))?;
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("'{entry}' has no host"));
        }
        out.push((host.to_string(), count));
    }
    Ok(out)
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Open connections by address and in total, shared by every listener of the broker.
#[derive(Debug, Default)]
pub struct ConnectionQuotas {
    counts: Mutex<Counts>,
    slot_freed: Notify,
}

/// Why a connection is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ip} already has the configured maximum of {max} connections")]
pub struct TooManyConnections {
    /// The client's address.
    pub ip: IpAddr,
    /// Its limit.
    pub max: usize,
}

/// One counted connection; dropping it frees its slot.
#[derive(Debug)]
pub struct ConnectionPermit {
    quotas: Arc<ConnectionQuotas>,
    ip: IpAddr,
    counts_in_total: bool,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut c = self.quotas.lock();
        if self.counts_in_total {
            c.total = c.total.saturating_sub(1);
        }
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
        drop(c);
        self.quotas.slot_freed.notify_waiters();
    }
}

impl ConnectionQuotas {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a connection from `ip` accepted on a listener (`protected`: the inter-broker
    /// listener of a broker with several listeners, exempt from `max.connections`). Waits
    /// while `max.connections` are open, then fails with [`TooManyConnections`] if `ip` is at
    /// its limit (the caller closes the socket). `limits` is called again after every wait,
    /// so a changed config applies.
    pub async fn acquire(
        self: &Arc<Self>,
        ip: IpAddr,
        protected: bool,
        limits: impl Fn() -> ConnectionLimits,
    ) -> Result<ConnectionPermit, TooManyConnections> {
        loop {
            let freed = self.slot_freed.notified();
            tokio::pin!(freed);
            // Register before checking, so a close between the check and the wait is seen.
            freed.as_mut().enable();
            let limits = limits();
            {
                let mut c = self.lock();
                if protected || c.total < limits.max_connections {
                    let count = c.per_ip.get(&ip).copied().unwrap_or(0);
                    c.per_ip.insert(ip, count + 1);
                    if !protected {
                        c.total += 1;
                    }
                    let permit = ConnectionPermit {
                        quotas: self.clone(),
                        ip,
                        counts_in_total: !protected,
                    };
                    drop(c);
                    let max = limits.max_for(ip);
                    if count >= max {
                        return Err(TooManyConnections { ip, max });
                    }
                    return Ok(permit);
                }
            }
            freed.await;
        }
    }

    /// Connections counted now (diagnostics and tests).
    pub fn open_connections(&self) -> usize {
        let c = self.lock();
        c.per_ip.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(max: usize, per_ip: usize, overrides: &[(IpAddr, usize)]) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: max,
            max_per_ip: per_ip,
            per_ip_overrides: overrides.iter().copied().collect(),
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[tokio::test]
    async fn per_ip_limit_refuses_and_overrides_win() {
        let q = Arc::new(ConnectionQuotas::default());
        let l = || limits(usize::MAX, 2, &[(B, 1)]);
        let _a1 = q.acquire(A, false, l).await.unwrap();
        let a2 = q.acquire(A, false, l).await.unwrap();
        assert_eq!(
            q.acquire(A, false, l).await.unwrap_err(),
            TooManyConnections { ip: A, max: 2 }
        );
        let _b1 = q.acquire(B, false, l).await.unwrap();
        assert!(q.acquire(B, false, l).await.is_err(), "override of 1");
        assert_eq!(q.open_connections(), 3, "refused ones are not counted");
        drop(a2);
        q.acquire(A, false, l).await.unwrap();
    }

    #[tokio::test]
    async fn max_connections_waits_for_a_free_slot() {
        let q = Arc::new(ConnectionQuotas::default());
        let l = || limits(2, usize::MAX, &[]);
        let first = q.acquire(A, false, l).await.unwrap();
        let _second = q.acquire(B, false, l).await.unwrap();
        let waiting = tokio::spawn({
            let q = q.clone();
            async move { q.acquire(A, false, l).await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the third waits");
        // The protected (inter-broker) listener is not held back.
        let _protected = q.acquire(A, true, l).await.unwrap();
        drop(first);
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("served once a slot is free")
            .unwrap()
            .unwrap();
    }

    #[test]
    fn overrides_parse_like_kafka() {
        assert_eq!(
            parse_overrides("127.0.0.1:5, localhost:2,[::1]:0").unwrap(),
            vec![
                ("127.0.0.1".to_string(), 5),
                ("localhost".to_string(), 2),
                ("::1".to_string(), 0)
            ]
        );
        assert!(parse_overrides("127.0.0.1").is_err());
        assert!(parse_overrides("127.0.0.1:x").is_err());
        assert!(parse_overrides(":3").is_err());
    }
}
