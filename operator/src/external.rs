//! External listeners (`type: nodeport` and `loadbalancer`): clients outside the Kubernetes
//! cluster reach each broker at an address of its own, as Strimzi gives them.
//!
//! Every broker gets one Service per external listener, `<pod>-<listener>` (a NodePort or
//! LoadBalancer Service selecting only its pod), beside the listener's bootstrap Service. The
//! address a broker advertises on such a listener is known only once its pod is placed (the
//! node's address, with that Service's node port) or once the cloud has given the Service a
//! load balancer, so no pod template can say it. Strimzi's init container asks the API server
//! and writes it into the broker's config; Oxbow's pods have no API access, so, as for the rack
//! ([`crate::rack`]), the operator writes the broker's whole `advertised.listeners` onto the
//! pod as [`ADVERTISED_LISTENERS_ANNOTATION`], and the broker waits at start until its
//! downward-API annotations file holds it (`oxbow.advertised.listeners.annotation`).
//!
//! A pod keeps the addresses it started with; a new pod (rescheduled, or restarted in a roll)
//! is annotated afresh before its broker goes on.

/// The pod annotation holding the broker's `advertised.listeners`.
pub const ADVERTISED_LISTENERS_ANNOTATION: &str = "oxbow.dev/advertised-listeners";

/// The broker key naming that annotation (the broker's `ADVERTISED_LISTENERS_ANNOTATION_KEY`).
pub const ANNOTATION_KEY: &str = "oxbow.advertised.listeners.annotation";

/// The broker key naming the pod's annotations file it is read from (not the rack's
/// `oxbow.rack.annotations.file`, which also makes the broker wait for a rack).
pub const POD_ANNOTATIONS_FILE_KEY: &str = "oxbow.pod.annotations.file";

/// Which of a node's addresses (Kubernetes' `NodeAddress` types) a node-port listener
/// advertises, in order of preference: Strimzi's default order, an address reachable from
/// outside first.
pub const NODE_ADDRESS_TYPES: &[&str] = &[
    "ExternalDNS",
    "ExternalIP",
    "InternalDNS",
    "InternalIP",
    "Hostname",
];

/// The address to advertise for a broker on node `addresses` (`(type, address)` pairs of the
/// Node's status), by [`NODE_ADDRESS_TYPES`]; `None` when it has none of them.
pub fn node_address(addresses: &[(String, String)]) -> Option<String> {
    NODE_ADDRESS_TYPES.iter().find_map(|kind| {
        addresses
            .iter()
            .find(|(t, a)| t == kind && !a.is_empty())
            .map(|(_, a)| a.clone())
    })
}

/// Where one external listener of one broker is reached, as its Service says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A node port: advertised with the address of the broker's node.
    NodePort(Option<i32>),
    /// A load balancer: its ingress IP or host name (`None` until the cloud gave one) and
    /// the listener's port.
    LoadBalancer(Option<String>, i32),
}

/// A broker's `advertised.listeners`: its `internal` entries (`NAME://host:port`) as they are,
/// then each external listener (upper-case name, endpoint). `Err` names what is missing: the
/// node's address, a node port not allocated yet, a load balancer without an address.
pub fn advertised_listeners(
    internal: &[String],
    node: Option<&str>,
    external: &[(String, Endpoint)],
) -> Result<String, String> {
    let mut entries: Vec<String> = internal.to_vec();
    for (name, endpoint) in external {
        let entry = match endpoint {
            Endpoint::NodePort(Some(port)) => {
                let host = node.ok_or_else(|| {
                    "its node has no address to advertise (none of ExternalDNS, ExternalIP, \
                     InternalDNS, InternalIP, Hostname)"
                        .to_string()
                })?;
                format!("{name}://{}:{port}", bracketed(host))
            }
            Endpoint::NodePort(None) => {
                return Err(format!(
                    "listener {name}: the node port is not allocated yet"
                ))
            }
            Endpoint::LoadBalancer(Some(host), port) => {
                format!("{name}://{}:{port}", bracketed(host))
            }
            Endpoint::LoadBalancer(None, _) => {
                return Err(format!(
                    "listener {name}: its LoadBalancer Service has no address yet"
                ))
            }
        };
        entries.push(entry);
    }
    Ok(entries.join(","))
}

/// IPv6 addresses in brackets, as Kafka's endpoints write them.
fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(t, a)| (t.to_string(), a.to_string()))
            .collect()
    }

    #[test]
    fn the_node_address_prefers_external_ones_as_strimzi_does() {
        let all = addrs(&[
            ("Hostname", "node-1"),
            ("InternalIP", "10.0.0.5"),
            ("ExternalIP", "203.0.113.7"),
        ]);
        assert_eq!(node_address(&all).as_deref(), Some("203.0.113.7"));
        let internal = addrs(&[("Hostname", "node-1"), ("InternalIP", "10.0.0.5")]);
        assert_eq!(node_address(&internal).as_deref(), Some("10.0.0.5"));
        assert_eq!(
            node_address(&addrs(&[("Hostname", "node-1")])).as_deref(),
            Some("node-1")
        );
        assert_eq!(node_address(&addrs(&[("InternalIP", "")])), None);
    }

    #[test]
    fn a_broker_advertises_its_internal_names_then_its_node_port_on_its_node() {
        let internal = ["PLAIN://kc-1.ns.svc.cluster.local:9092".to_string()];
        let external = [
            ("EXT".to_string(), Endpoint::NodePort(Some(31_234))),
            (
                "LB".to_string(),
                Endpoint::LoadBalancer(Some("lb.example.com".into()), 9095),
            ),
        ];
        assert_eq!(
            advertised_listeners(&internal, Some("10.0.0.5"), &external).as_deref(),
            Ok("PLAIN://kc-1.ns.svc.cluster.local:9092,EXT://10.0.0.5:31234,LB://lb.example.com:9095")
        );
        assert_eq!(
            advertised_listeners(&internal, Some("fd00::5"), &external[..1]).as_deref(),
            Ok("PLAIN://kc-1.ns.svc.cluster.local:9092,EXT://[fd00::5]:31234")
        );
    }

    #[test]
    fn nothing_is_advertised_until_every_address_is_known() {
        let internal = ["PLAIN://kc-1.ns.svc.cluster.local:9092".to_string()];
        let node_port = [("EXT".to_string(), Endpoint::NodePort(Some(31_234)))];
        assert!(advertised_listeners(&internal, None, &node_port)
            .is_err_and(|e| e.contains("no address")));
        let unallocated = [("EXT".to_string(), Endpoint::NodePort(None))];
        assert!(
            advertised_listeners(&internal, Some("10.0.0.5"), &unallocated)
                .is_err_and(|e| e.contains("node port"))
        );
        let pending = [("LB".to_string(), Endpoint::LoadBalancer(None, 9095))];
        assert!(advertised_listeners(&internal, Some("10.0.0.5"), &pending)
            .is_err_and(|e| e.contains("LoadBalancer")));
        // Internal listeners alone need nothing.
        assert_eq!(
            advertised_listeners(&internal, None, &[]).as_deref(),
            Ok("PLAIN://kc-1.ns.svc.cluster.local:9092")
        );
    }
}
