//! Which KRaft cluster settings a single Oxbow node can honour today.
//!
//! Until the replicated metadata quorum exists, every Oxbow broker is a one-node cluster
//! that is its own controller. Settings that describe anything else — a broker whose
//! controllers run elsewhere, a dedicated controller, a quorum of several voters — would
//! otherwise be accepted and ignored, so three nodes configured as one cluster would
//! quietly become three one-node clusters. They are a start-up error naming the key.
//!
//! Accepted (they describe exactly this node, so honouring them changes nothing):
//! - `process.roles` unset (Oxbow's own single node) or `broker,controller` in any order;
//! - `controller.quorum.voters` unset/empty, or one voter whose id is this `node.id` and
//!   whose endpoint is one of this node's controller listeners;
//! - `controller.quorum.bootstrap.servers` unset/empty, or one endpoint that is one of this
//!   node's controller listeners (Kafka's quick-start `server.properties`).
//!
//! A controller listener is a `listeners` entry named in `controller.listener.names`. An
//! endpoint matches it on the port, and on the host unless the listener binds every
//! interface (then any host name is taken as this node: a wildcard listener cannot tell).
//! Loopback names (`localhost`, `127.0.0.1`, `::1`) match each other.

use super::broker::Listener;
use super::error::ConfigError;

/// Why the configuration describes more than a single combined node, as a message naming
/// the key; `Ok` if it describes this node only (see the module docs for the rules).
pub(crate) fn check_single_node(
    node_id: i32,
    process_roles: &[String],
    voters_raw: &str,
    bootstrap_raw: &str,
    listeners: &[Listener],
    controller_listener_names: &[String],
) -> Result<(), ConfigError> {
    const WHY: &str = "Oxbow serves a single node that is its own controller until \
                       replication is implemented";
    let has = |role: &str| process_roles.iter().any(|r| r == role);
    let combined_or_unset = process_roles.is_empty() || (has("broker") && has("controller"));
    if !combined_or_unset {
        return Err(ConfigError::Invalid(format!(
            "process.roles={}: this node would need a controller quorum running elsewhere \
             (or serve only as a controller); {WHY}. Use process.roles=broker,controller or \
             leave it unset",
            process_roles.join(",")
        )));
    }
    let controllers: Vec<&Listener> = listeners
        .iter()
        .filter(|l| controller_listener_names.contains(&l.name))
        .collect();
    let is_self = |host: &str, port: u16| {
        controllers
            .iter()
            .any(|l| l.port == port && host_matches(&l.host, host))
    };
    let own = || {
        if controllers.is_empty() {
            "this node has no controller listener (a listeners entry named in \
             controller.listener.names)"
                .to_string()
        } else {
            format!(
                "this node's controller listeners are {}",
                controllers
                    .iter()
                    .map(|l| l.address())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }
    };

    let voters = entries(voters_raw);
    if voters.len() > 1 {
        return Err(ConfigError::Invalid(format!(
            "controller.quorum.voters={voters_raw} names {} voters: a multi-node controller \
             quorum is not served yet; {WHY}",
            voters.len()
        )));
    }
    if let Some(voter) = voters.first() {
        let (id, endpoint) = voter.split_once('@').ok_or_else(|| {
            ConfigError::invalid_value(
                "controller.quorum.voters",
                voters_raw,
                "Expected entries of the form {id}@{host}:{port}",
            )
        })?;
        let id: i32 = id.trim().parse().map_err(|_| {
            ConfigError::invalid_value(
                "controller.quorum.voters",
                voters_raw,
                "Expected entries of the form {id}@{host}:{port}",
            )
        })?;
        let (host, port) = parse_endpoint("controller.quorum.voters", voters_raw, endpoint)?;
        if id != node_id {
            return Err(ConfigError::Invalid(format!(
                "controller.quorum.voters={voters_raw} names voter {id}, but this node is \
                 node.id={node_id}: its controller would run elsewhere; {WHY}"
            )));
        }
        if !is_self(&host, port) {
            return Err(ConfigError::Invalid(format!(
                "controller.quorum.voters={voters_raw}: {endpoint} is not this node ({}); {WHY}",
                own()
            )));
        }
    }

    let servers = entries(bootstrap_raw);
    if servers.len() > 1 {
        return Err(ConfigError::Invalid(format!(
            "controller.quorum.bootstrap.servers={bootstrap_raw} names {} controllers: a \
             multi-node controller quorum is not served yet; {WHY}",
            servers.len()
        )));
    }
    if let Some(server) = servers.first() {
        let (host, port) =
            parse_endpoint("controller.quorum.bootstrap.servers", bootstrap_raw, server)?;
        if !is_self(&host, port) {
            return Err(ConfigError::Invalid(format!(
                "controller.quorum.bootstrap.servers={bootstrap_raw}: {server} is not this node \
                 ({}); {WHY}",
                own()
            )));
        }
    }
    Ok(())
}

fn entries(raw: &str) -> Vec<&str> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// `host:port` or `[v6]:port` → (host without brackets, port).
fn parse_endpoint(key: &str, raw: &str, endpoint: &str) -> Result<(String, u16), ConfigError> {
    let bad = || ConfigError::invalid_value(key, raw, "Expected endpoints of the form host:port");
    let (host, port) = endpoint.trim().rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

fn host_matches(listener_host: &str, host: &str) -> bool {
    let loopback = |h: &str| {
        h.eq_ignore_ascii_case("localhost")
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    matches!(listener_host, "" | "0.0.0.0" | "::")
        || listener_host.eq_ignore_ascii_case(host)
        || (loopback(listener_host) && loopback(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(name: &str, host: &str, port: u16) -> Listener {
        Listener {
            name: name.into(),
            host: host.into(),
            port,
        }
    }

    fn check(roles: &str, voters: &str, bootstrap: &str) -> Result<(), String> {
        let roles: Vec<String> = entries(roles).into_iter().map(String::from).collect();
        check_single_node(
            1,
            &roles,
            voters,
            bootstrap,
            &[
                listener("PLAINTEXT", "0.0.0.0", 9092),
                listener("CONTROLLER", "127.0.0.1", 9093),
            ],
            &["CONTROLLER".to_string()],
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn settings_that_describe_this_node_only_are_accepted() {
        check("", "", "").unwrap();
        check("broker,controller", "", "").unwrap();
        check("controller,broker", "1@127.0.0.1:9093", "").unwrap();
        check("broker,controller", "1@localhost:9093", "").unwrap();
        check("broker,controller", "", "localhost:9093").unwrap();
    }

    #[test]
    fn a_cluster_or_a_separate_controller_is_refused_naming_the_key() {
        let e = check("broker", "", "").unwrap_err();
        assert!(e.starts_with("process.roles=broker:"), "{e}");
        let e = check("controller", "", "").unwrap_err();
        assert!(e.starts_with("process.roles=controller:"), "{e}");
        let e = check(
            "broker,controller",
            "1@127.0.0.1:9093,2@10.0.0.2:9093,3@10.0.0.3:9093",
            "",
        )
        .unwrap_err();
        assert!(
            e.contains("controller.quorum.voters=") && e.contains("names 3 voters"),
            "{e}"
        );
        let e = check("broker,controller", "2@127.0.0.1:9093", "").unwrap_err();
        assert!(
            e.contains("names voter 2") && e.contains("node.id=1"),
            "{e}"
        );
        let e = check("broker,controller", "1@10.0.0.9:9093", "").unwrap_err();
        assert!(e.contains("10.0.0.9:9093 is not this node"), "{e}");
        let e = check("broker,controller", "1@127.0.0.1:9999", "").unwrap_err();
        assert!(e.contains("controller listeners are 127.0.0.1:9093"), "{e}");
        let e = check("", "", "a:9093,b:9093").unwrap_err();
        assert!(
            e.starts_with("controller.quorum.bootstrap.servers=a:9093,b:9093 names 2"),
            "{e}"
        );
        let e = check("", "", "other:9093").unwrap_err();
        assert!(e.contains("other:9093 is not this node"), "{e}");
        let e = check("", "one", "").unwrap_err();
        assert!(e.contains("controller.quorum.voters"), "{e}");
    }

    #[test]
    fn a_voter_without_a_controller_listener_is_refused() {
        let e = check_single_node(
            1,
            &[],
            "1@localhost:9093",
            "",
            &[listener("PLAINTEXT", "127.0.0.1", 9092)],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("has no controller listener"), "{e}");
    }
}
