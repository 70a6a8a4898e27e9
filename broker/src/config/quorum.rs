//! The KRaft cluster settings: `process.roles`, `controller.quorum.voters`,
//! `controller.quorum.bootstrap.servers`, `controller.listener.names` and the quorum timeouts,
//! checked the way Kafka's `KafkaConfig` checks them, into a [`QuorumConfig`].
//!
//! What runs:
//! - no quorum settings, or settings that name only this node (Kafka's quick-start
//!   `server.properties` with `controller.quorum.bootstrap.servers=localhost:9093`): a single
//!   node that is its own controller, exactly as before (`LocalMetadataStore`);
//! - `controller.quorum.voters` naming several nodes: the replicated quorum
//!   (`metadata::quorum`), this node one of its voters when `process.roles` has `controller`.
//!
//! Refused at start-up with a message naming the key:
//! - a voter list without this node while `process.roles` has `controller` (and one with it
//!   while it is `broker` only), as Kafka refuses them; a broker-only node serving a
//!   controller listener, or naming neither voters nor bootstrap servers;
//! - `controller.quorum.bootstrap.servers` naming other nodes without `controller.quorum.voters`
//!   and without `process.roles` (Kafka needs the roles for KRaft).
//!
//! With `process.roles` naming `controller`, `controller.quorum.bootstrap.servers` naming other
//! nodes and no voter list, the node joins an existing quorum as a non-voter (KIP-853's
//! dynamic quorum, [`QuorumConfig::joins_dynamically`]): it replicates the log and becomes a
//! voter only when `kafka-metadata-quorum.sh add-controller` (AddRaftVoter) adds it.
//! - `process.roles=broker` alone: such a node would be a quorum observer that only replays
//!   the log, which is not served yet.
//!
//! `oxbow.initial.controllers` (Oxbow's key: Kafka's `kafka-storage.sh format
//! --initial-controllers` as a config key, since Oxbow has no format step) names the first
//! voters of a new dynamic quorum, so that nodes sharing one config file (a StatefulSet's pods)
//! can start one: with `controller.quorum.bootstrap.servers`, a controller role and no
//! `controller.quorum.voters` (other combinations are refused naming the keys). A node it
//! lists bootstraps a pristine quorum like a static voter of that list and also joins through
//! the bootstrap servers (see [`QuorumConfig::initial_controllers`]); a node it does not list
//! joins dynamically. Even one entry runs the replicated quorum (a single voter), so voters can
//! be added later.
//!
//! A controller listener is a `listeners` entry named in `controller.listener.names`. An
//! endpoint matches it on the port, and on the host unless the listener binds every
//! interface (then any host name is taken as this node: a wildcard listener cannot tell).
//! Loopback names (`localhost`, `127.0.0.1`, `::1`) match each other. This node's own
//! `controller.quorum.voters` entry matches on the port alone when it names a host rather
//! than an address (a Kubernetes pod's DNS name while the listener binds the pod's IP).

use super::broker::{Listener, INITIAL_CONTROLLERS_KEY};
use super::error::ConfigError;

/// One `controller.quorum.voters` entry: `id@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumVoter {
    /// The voter's `node.id`.
    pub id: i32,
    /// Host its controller listener is reached at.
    pub host: String,
    /// Port of its controller listener.
    pub port: u16,
}

impl QuorumVoter {
    /// `host:port`, with IPv6 hosts in brackets, fit for `TcpStream::connect`.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The metadata quorum this node belongs to, from the KRaft keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumConfig {
    /// `process.roles` has `broker` (or is unset: Oxbow's combined single node).
    pub broker: bool,
    /// `process.roles` has `controller` (or is unset).
    pub controller: bool,
    /// `controller.quorum.voters`, in the order given.
    pub voters: Vec<QuorumVoter>,
    /// `controller.quorum.bootstrap.servers` as (host, port).
    pub bootstrap_servers: Vec<(String, u16)>,
    /// A controller without a voter list whose bootstrap servers name other nodes: it joins
    /// the quorum they run as a non-voter (see [`QuorumConfig::joins_dynamically`]).
    pub dynamic: bool,
    /// `oxbow.initial.controllers`, in the order given (empty when unset): the voters a
    /// pristine dynamic quorum starts with. Read only while this node's metadata log is
    /// pristine; after that the log's membership counts. A node listed here bootstraps the
    /// quorum like a voter of `controller.quorum.voters` and also joins through the bootstrap
    /// servers (so a listed node that lost its disk, or is no longer a voter, rejoins as a
    /// learner); a node not listed joins dynamically ([`QuorumConfig::joins_dynamically`]).
    pub initial_controllers: Vec<QuorumVoter>,
    /// `controller.quorum.election.timeout.ms` (1000): a candidate that has not won waits a
    /// random time up to this long before the next election.
    pub election_timeout_ms: u64,
    /// `controller.quorum.fetch.timeout.ms` (2000): a voter that has not heard from the leader
    /// this long becomes a candidate.
    pub fetch_timeout_ms: u64,
    /// `controller.quorum.request.timeout.ms` (2000): one request between voters.
    pub request_timeout_ms: u64,
    /// `controller.quorum.retry.backoff.ms` (20): wait before retrying a failed connection.
    pub retry_backoff_ms: u64,
}

impl QuorumConfig {
    /// The configuration of a single node that is its own controller, with Kafka's
    /// default timeouts.
    pub fn single_node() -> Self {
        QuorumConfig {
            broker: true,
            controller: true,
            voters: Vec::new(),
            bootstrap_servers: Vec::new(),
            dynamic: false,
            initial_controllers: Vec::new(),
            election_timeout_ms: 1000,
            fetch_timeout_ms: 2000,
            request_timeout_ms: 2000,
            retry_backoff_ms: 20,
        }
    }

    /// True when this node is part of a replicated quorum (a voter list naming more than one
    /// node, or a node with one role only: a broker-only node observes the controllers', a
    /// controller-only one serves other nodes), so the broker must run the quorum store or
    /// observer rather than `LocalMetadataStore`.
    pub fn is_replicated(&self) -> bool {
        self.voters.len() > 1
            || !self.broker
            || !self.controller
            || self.dynamic
            || !self.initial_controllers.is_empty()
    }

    /// True for a node that `oxbow.initial.controllers` lists: it may bootstrap a pristine
    /// quorum with that list as its voters (and joins through the bootstrap servers too).
    pub fn is_initial_controller(&self, node_id: i32) -> bool {
        self.initial_controllers.iter().any(|v| v.id == node_id)
    }

    /// True for a controller that joins a running quorum through
    /// `controller.quorum.bootstrap.servers` (no `controller.quorum.voters`; KIP-853): it
    /// starts as a non-voter (an openraft learner, listed as an observer) and votes once
    /// AddRaftVoter added it; after that its log's membership says it is a voter.
    pub fn joins_dynamically(&self) -> bool {
        self.dynamic
    }

    /// True for `process.roles=broker`: a quorum observer that replays the metadata log
    /// fetched from the active controller and never votes.
    pub fn is_observer(&self) -> bool {
        !self.controller
    }
}

/// Timeouts as read from the config keys (validated non-negative by the caller).
#[derive(Debug, Clone, Copy)]
pub(crate) struct QuorumTimeouts {
    pub(crate) election_timeout_ms: i32,
    pub(crate) fetch_timeout_ms: i32,
    pub(crate) request_timeout_ms: i32,
    pub(crate) retry_backoff_ms: i32,
}

/// Checks the KRaft keys against each other and against this node's listeners (see the
/// module docs for the rules) and returns the quorum this node belongs to. Errors name the
/// key and its value.
#[allow(clippy::too_many_arguments)]
pub(crate) fn parse_quorum(
    node_id: i32,
    process_roles: &[String],
    voters_raw: &str,
    bootstrap_raw: &str,
    initial_raw: &str,
    listeners: &[Listener],
    controller_listener_names: &[String],
    timeouts: QuorumTimeouts,
) -> Result<QuorumConfig, ConfigError> {
    let mut broker = process_roles.is_empty();
    let mut controller = process_roles.is_empty();
    for role in process_roles {
        let seen = match role.as_str() {
            "broker" => std::mem::replace(&mut broker, true),
            "controller" => std::mem::replace(&mut controller, true),
            other => {
                return Err(ConfigError::invalid_value(
                    "process.roles",
                    &process_roles.join(","),
                    format!("Unknown process role '{other}' (must be 'broker' or 'controller')"),
                ))
            }
        };
        if seen {
            return Err(ConfigError::invalid_value(
                "process.roles",
                &process_roles.join(","),
                "Duplicate role names found",
            ));
        }
    }
    let timeout = |key: &str, v: i32, min: i32| -> Result<u64, ConfigError> {
        u64::try_from(v)
            .ok()
            .filter(|v| *v >= min as u64)
            .ok_or_else(|| {
                ConfigError::invalid_value(
                    key,
                    &v.to_string(),
                    format!("Value must be at least {min}"),
                )
            })
    };
    let config = QuorumConfig {
        broker,
        controller,
        voters: parse_voters(voters_raw)?,
        bootstrap_servers: entries(bootstrap_raw)
            .into_iter()
            .map(|s| parse_endpoint("controller.quorum.bootstrap.servers", bootstrap_raw, s))
            .collect::<Result<_, _>>()?,
        dynamic: false,
        initial_controllers: parse_initial_controllers(initial_raw)?,
        election_timeout_ms: timeout(
            "controller.quorum.election.timeout.ms",
            timeouts.election_timeout_ms,
            1,
        )?,
        fetch_timeout_ms: timeout(
            "controller.quorum.fetch.timeout.ms",
            timeouts.fetch_timeout_ms,
            1,
        )?,
        request_timeout_ms: timeout(
            "controller.quorum.request.timeout.ms",
            timeouts.request_timeout_ms,
            1,
        )?,
        retry_backoff_ms: timeout(
            "controller.quorum.retry.backoff.ms",
            timeouts.retry_backoff_ms,
            0,
        )?,
    };

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

    if !config.initial_controllers.is_empty() {
        return check_initial_controllers(
            config,
            node_id,
            process_roles,
            initial_raw,
            &controllers,
            own(),
        );
    }

    if !controller {
        // A broker-only node is a quorum observer: it reaches the controllers through
        // controller.listener.names' first entry and must not serve that listener itself.
        if controller_listener_names.is_empty() {
            return Err(ConfigError::Invalid(
                "controller.listener.names must contain at least one value when running KRaft \
                 with just the broker role"
                    .to_string(),
            ));
        }
        if !controllers.is_empty() {
            return Err(ConfigError::Invalid(
                "controller.listener.names must not contain a value appearing in the \
                 'listeners' configuration when running KRaft with just the broker role"
                    .to_string(),
            ));
        }
        if config.voters.iter().any(|v| v.id == node_id) {
            return Err(ConfigError::Invalid(format!(
                "If process.roles contains just the 'broker' role, the node id {node_id} must \
                 not be included in the set of voters controller.quorum.voters={}",
                scala_set(config.voters.iter().map(|v| v.id))
            )));
        }
        if config.voters.is_empty() && config.bootstrap_servers.is_empty() {
            return Err(ConfigError::Invalid(
                "If using process.roles, either controller.quorum.bootstrap.servers must contain \
                 the set of bootstrap controllers or controller.quorum.voters must contain a \
                 parseable set of voters."
                    .to_string(),
            ));
        }
        return Ok(config);
    }
    if !broker && controller_listener_names.is_empty() {
        // Kafka requires the controller listener names on every KRaft node; a
        // controller-only node is served by the quorum store as a voter.
        return Err(ConfigError::Invalid(
            "controller.listener.names must contain at least one value when running KRaft \
             with process.roles=controller"
                .to_string(),
        ));
    }

    if !config.voters.is_empty() {
        let Some(me) = config.voters.iter().find(|v| v.id == node_id) else {
            return Err(ConfigError::Invalid(format!(
                "If process.roles contains the 'controller' role, the node id {node_id} must be \
                 included in the set of voters controller.quorum.voters={voters_raw}"
            )));
        };
        if !is_own_endpoint(&controllers, me) {
            return Err(ConfigError::Invalid(format!(
                "controller.quorum.voters={voters_raw}: {} (voter {node_id}) is not this node ({})",
                me.address(),
                own()
            )));
        }
        return Ok(config);
    }

    // No voter list: a bootstrap list that names this node alone is a single node; one that
    // names others is a quorum this node joins as a non-voter (KIP-853), when the roles say
    // it is a KRaft controller.
    let names_others = config
        .bootstrap_servers
        .iter()
        .any(|(host, port)| !is_self(host, *port));
    if names_others && !process_roles.is_empty() {
        if controllers.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "controller.quorum.bootstrap.servers={bootstrap_raw}: a controller that joins a \
                 quorum needs a controller listener ({})",
                own()
            )));
        }
        return Ok(QuorumConfig {
            dynamic: true,
            ..config
        });
    }
    if config.bootstrap_servers.len() > 1 {
        return Err(ConfigError::Invalid(format!(
            "controller.quorum.bootstrap.servers={bootstrap_raw} names {} controllers but \
             neither controller.quorum.voters nor process.roles is set: set process.roles to \
             join that quorum (KIP-853), or list the voters as \
             controller.quorum.voters=id@host:port,...",
            config.bootstrap_servers.len()
        )));
    }
    if let Some((host, port)) = config.bootstrap_servers.first() {
        if !is_self(host, *port) {
            return Err(ConfigError::Invalid(format!(
                "controller.quorum.bootstrap.servers={bootstrap_raw}: {host}:{port} is not this \
                 node ({}) and neither controller.quorum.voters nor process.roles is set: set \
                 process.roles to join that quorum (KIP-853), or list the voters as \
                 controller.quorum.voters=id@host:port,...",
                own()
            )));
        }
    }
    Ok(config)
}

/// Whether `me`, this node's entry of a voter list, names one of its controller listeners.
/// A host name is taken as this node: Kafka does not compare the voter's address with the
/// listeners at all, and a name cannot be checked at start-up without DNS, which in
/// Kubernetes publishes a pod's name only once the pod runs (a StatefulSet's voters are its
/// pods' names while each binds its own pod IP). Addresses and ports are compared.
fn is_own_endpoint(controllers: &[&Listener], me: &QuorumVoter) -> bool {
    let named =
        me.host.parse::<std::net::IpAddr>().is_err() && !me.host.eq_ignore_ascii_case("localhost");
    controllers
        .iter()
        .any(|l| l.port == me.port && (named || host_matches(&l.host, &me.host)))
}

/// The rules of `oxbow.initial.controllers` (see the module docs), for a `config` whose list
/// is not empty: it needs the bootstrap servers and a controller role, excludes a static voter
/// list, and this node's own entry, if any, must name its controller listener.
fn check_initial_controllers(
    config: QuorumConfig,
    node_id: i32,
    process_roles: &[String],
    initial_raw: &str,
    controllers: &[&Listener],
    own: String,
) -> Result<QuorumConfig, ConfigError> {
    let key = INITIAL_CONTROLLERS_KEY;
    if !config.voters.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "{key} and controller.quorum.voters cannot both be set: {key} starts a dynamic \
             quorum (KIP-853) whose voters change at runtime, controller.quorum.voters fixes \
             them; use {key} with controller.quorum.bootstrap.servers"
        )));
    }
    if config.bootstrap_servers.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "{key}={initial_raw} needs controller.quorum.bootstrap.servers: the nodes it does \
             not list, and listed nodes that lost their data, join the quorum through them"
        )));
    }
    if process_roles.is_empty() || !config.controller {
        return Err(ConfigError::Invalid(format!(
            "{key}={initial_raw} needs process.roles with the 'controller' role (process.roles={})",
            process_roles.join(",")
        )));
    }
    if controllers.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "{key}={initial_raw}: a controller of a dynamic quorum needs a controller listener \
             ({own})"
        )));
    }
    let listed = config.initial_controllers.iter().find(|v| v.id == node_id);
    if let Some(me) = listed {
        if !is_own_endpoint(controllers, me) {
            return Err(ConfigError::Invalid(format!(
                "{key}={initial_raw}: {} (controller {node_id}) is not this node ({own})",
                me.address()
            )));
        }
    }
    Ok(QuorumConfig {
        // A node not listed joins exactly as a node without the key would.
        dynamic: listed.is_none(),
        ..config
    })
}

/// `oxbow.initial.controllers`: `id@host:port[:directoryId]` entries, as Kafka's
/// `--initial-controllers` takes them (the directory id is accepted and dropped: Oxbow's
/// membership keeps none); duplicate ids are an error.
fn parse_initial_controllers(raw: &str) -> Result<Vec<QuorumVoter>, ConfigError> {
    parse_voter_list(
        INITIAL_CONTROLLERS_KEY,
        raw,
        "Expected entries of the form {id}@{host}:{port}[:{directoryId}]",
        "Duplicate controller id",
        true,
    )
}

/// `id@host:port,...`; duplicate ids are an error, as in Kafka.
fn parse_voters(raw: &str) -> Result<Vec<QuorumVoter>, ConfigError> {
    parse_voter_list(
        "controller.quorum.voters",
        raw,
        "Expected entries of the form {id}@{host}:{port}",
        "Duplicate voter id",
        false,
    )
}

/// `id@host:port` entries of `key` (with `directory_ids`, each may end in `:directoryId`,
/// dropped); errors in Kafka's words: `form` for an entry that does not parse, `duplicate`
/// for an id given twice.
fn parse_voter_list(
    key: &str,
    raw: &str,
    form: &str,
    duplicate: &str,
    directory_ids: bool,
) -> Result<Vec<QuorumVoter>, ConfigError> {
    let bad = || ConfigError::invalid_value(key, raw, form);
    let mut voters: Vec<QuorumVoter> = Vec::new();
    for entry in entries(raw) {
        let (id, endpoint) = entry.split_once('@').ok_or_else(bad)?;
        let id: i32 = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(bad)?;
        // A last part that is not a port is the directory id (a 22-character base64 uuid,
        // never a number).
        let endpoint = match endpoint.rsplit_once(':') {
            Some((rest, last))
                if directory_ids && last.parse::<u16>().is_err() && !last.is_empty() =>
            {
                rest
            }
            _ => endpoint,
        };
        let (host, port) = parse_endpoint(key, raw, endpoint)?;
        if voters.iter().any(|v| v.id == id) {
            return Err(ConfigError::invalid_value(
                key,
                raw,
                format!("{duplicate} {id}"),
            ));
        }
        voters.push(QuorumVoter { id, host, port });
    }
    Ok(voters)
}

/// Kafka prints voter ids as a Scala set in its messages: `Set(0, 1, 2)`.
fn scala_set(ids: impl Iterator<Item = i32>) -> String {
    format!(
        "Set({})",
        ids.map(|id| id.to_string()).collect::<Vec<_>>().join(", ")
    )
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

    const TIMEOUTS: QuorumTimeouts = QuorumTimeouts {
        election_timeout_ms: 1000,
        fetch_timeout_ms: 2000,
        request_timeout_ms: 2000,
        retry_backoff_ms: 20,
    };

    fn check(roles: &str, voters: &str, bootstrap: &str) -> Result<QuorumConfig, String> {
        initial(roles, voters, bootstrap, "")
    }

    #[test]
    fn settings_that_describe_this_node_only_stay_a_single_node() {
        for (roles, voters, bootstrap) in [
            ("", "", ""),
            ("broker,controller", "", ""),
            ("controller,broker", "1@127.0.0.1:9093", ""),
            ("broker,controller", "1@localhost:9093", ""),
            ("broker,controller", "", "localhost:9093"),
        ] {
            let q = check(roles, voters, bootstrap).unwrap();
            assert!(!q.is_replicated(), "{roles} {voters} {bootstrap}");
            assert!(q.broker && q.controller);
        }
    }

    #[test]
    fn a_voter_list_of_three_is_a_replicated_quorum() {
        let q = check(
            "broker,controller",
            "0@10.0.0.1:9093, 1@127.0.0.1:9093,2@[::1]:9093",
            "",
        )
        .unwrap();
        assert!(q.is_replicated());
        assert_eq!(q.voters.len(), 3);
        assert_eq!(q.voters[2].address(), "[::1]:9093");
        assert_eq!((q.fetch_timeout_ms, q.election_timeout_ms), (2000, 1000));
    }

    #[test]
    fn a_voter_named_by_host_name_is_this_node_on_its_controller_port() {
        // A StatefulSet's voters are its pods' DNS names while each pod binds its own IP.
        let q = check(
            "broker,controller",
            "0@oxbow-0.oxbow.ns.svc.cluster.local:9093,1@oxbow-1.oxbow.ns.svc.cluster.local:9093,\
             2@oxbow-2.oxbow.ns.svc.cluster.local:9093",
            "",
        )
        .unwrap();
        assert!(q.is_replicated());
        assert_eq!(
            q.voters[1].address(),
            "oxbow-1.oxbow.ns.svc.cluster.local:9093"
        );
    }

    #[test]
    fn inconsistent_quorum_settings_are_refused_naming_the_key() {
        let e = check("broker,controller", "0@h:9093,2@h:9093", "").unwrap_err();
        assert!(
            e.contains("node id 1 must be included") && e.contains("controller.quorum.voters="),
            "{e}"
        );
        let e = check("broker,controller", "1@10.0.0.9:9093,2@h:1", "").unwrap_err();
        assert!(
            e.contains("10.0.0.9:9093 (voter 1) is not this node"),
            "{e}"
        );
        let e = check("broker,controller", "1@127.0.0.1:9999", "").unwrap_err();
        assert!(e.contains("controller listeners are 127.0.0.1:9093"), "{e}");
        let e = check("broker,controller", "0@h:9093,1@oxbow-1.oxbow:9999", "").unwrap_err();
        assert!(e.contains("controller listeners are 127.0.0.1:9093"), "{e}");
        let e = check("broker,controller", "1@h:1,1@h:2", "").unwrap_err();
        assert!(e.contains("Duplicate voter id 1"), "{e}");
        let e = check("", "one", "").unwrap_err();
        assert!(e.contains("controller.quorum.voters"), "{e}");
        let e = check("", "", "a:9093,b:9093").unwrap_err();
        assert!(
            e.starts_with("controller.quorum.bootstrap.servers=a:9093,b:9093 names 2")
                && e.contains("KIP-853"),
            "{e}"
        );
        let e = check("", "", "other:9093").unwrap_err();
        assert!(e.contains("other:9093 is not this node"), "{e}");
        // A broker-only node may not serve the controller listener (this one does).
        let e = check("broker", "0@h:9093", "").unwrap_err();
        assert!(
            e.contains("must not contain a value appearing in the 'listeners'"),
            "{e}"
        );
        let e = check("broker,broker,controller", "", "").unwrap_err();
        assert!(e.contains("Duplicate role names"), "{e}");
    }

    #[test]
    fn a_controller_with_bootstrap_servers_naming_others_joins_dynamically() {
        for roles in ["broker,controller", "controller"] {
            let q = check(roles, "", "a:9093,b:9093").unwrap();
            assert!(q.joins_dynamically() && q.is_replicated(), "{roles}");
            assert!(q.voters.is_empty());
        }
        // Naming this node alone is still the single node; a voter list is the static quorum.
        let q = check("broker,controller", "", "127.0.0.1:9093").unwrap();
        assert!(!q.joins_dynamically() && !q.is_replicated());
        let q = check("broker,controller", "1@127.0.0.1:9093,2@b:9093", "a:9093").unwrap();
        assert!(!q.joins_dynamically() && q.is_replicated());
    }

    fn initial(
        roles: &str,
        voters: &str,
        bootstrap: &str,
        initial: &str,
    ) -> Result<QuorumConfig, String> {
        let roles: Vec<String> = entries(roles).into_iter().map(String::from).collect();
        parse_quorum(
            1,
            &roles,
            voters,
            bootstrap,
            initial,
            &[
                listener("PLAINTEXT", "0.0.0.0", 9092),
                listener("CONTROLLER", "127.0.0.1", 9093),
            ],
            &["CONTROLLER".to_string()],
            TIMEOUTS,
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_node_listed_in_the_initial_controllers_bootstraps_and_joins() {
        // Kafka's --initial-controllers form: the directory ids are accepted and dropped.
        let q = initial(
            "broker,controller",
            "",
            "127.0.0.1:9093,h2:9093",
            "0@h0:9093:K90IZ-0DRNazJ49kCZ1EMQ, 1@127.0.0.1:9093:AAAAAAAAAAAAAAAAAAAAAQ,2@[::1]:9093",
        )
        .unwrap();
        assert!(q.is_replicated() && q.is_initial_controller(1));
        assert!(!q.joins_dynamically() && q.voters.is_empty());
        let ids: Vec<_> = q.initial_controllers.iter().map(|v| v.address()).collect();
        assert_eq!(ids, ["h0:9093", "127.0.0.1:9093", "[::1]:9093"]);
        // A pod named by its DNS name is this node on its controller port.
        let q = initial(
            "controller",
            "",
            "oxbow-0.oxbow:9093",
            "0@oxbow-0.oxbow:9093,1@oxbow-1.oxbow:9093",
        )
        .unwrap();
        assert!(q.is_initial_controller(1) && q.is_replicated());
    }

    #[test]
    fn a_single_initial_controller_runs_the_replicated_quorum() {
        // Unlike a one-entry controller.quorum.voters (a single node), so that voters can be
        // added later.
        let q = initial(
            "broker,controller",
            "",
            "127.0.0.1:9093",
            "1@127.0.0.1:9093",
        )
        .unwrap();
        assert!(q.is_replicated() && q.is_initial_controller(1));
        let single = check("broker,controller", "1@127.0.0.1:9093", "").unwrap();
        assert!(!single.is_replicated());
    }

    #[test]
    fn a_node_not_in_the_initial_controllers_joins_dynamically() {
        let q = initial(
            "broker,controller",
            "",
            "h0:9093,h2:9093",
            "0@h0:9093,2@h2:9093",
        )
        .unwrap();
        assert!(q.joins_dynamically() && q.is_replicated() && !q.is_initial_controller(1));
        assert_eq!(q.initial_controllers.len(), 2);
    }

    #[test]
    fn initial_controllers_in_the_wrong_company_are_refused_naming_the_keys() {
        let key = INITIAL_CONTROLLERS_KEY;
        let e = initial(
            "broker,controller",
            "1@127.0.0.1:9093,2@h:9093",
            "h:9093",
            "1@127.0.0.1:9093",
        )
        .unwrap_err();
        assert!(
            e.starts_with(&format!(
                "{key} and controller.quorum.voters cannot both be set"
            )),
            "{e}"
        );
        let e = initial("broker,controller", "", "", "1@127.0.0.1:9093").unwrap_err();
        assert!(
            e.starts_with(&format!(
                "{key}=1@127.0.0.1:9093 needs controller.quorum.bootstrap.servers"
            )),
            "{e}"
        );
        for roles in ["", "broker"] {
            let e = initial(roles, "", "h:9093", "0@h:9093").unwrap_err();
            assert!(
                e.contains("needs process.roles with the 'controller' role"),
                "{roles}: {e}"
            );
        }
        let e = initial("broker,controller", "", "h:9093", "1@127.0.0.1:9999").unwrap_err();
        assert!(
            e.contains("127.0.0.1:9999 (controller 1) is not this node")
                && e.contains("controller listeners are 127.0.0.1:9093"),
            "{e}"
        );
        let e = parse_quorum(
            1,
            &["broker".to_string(), "controller".to_string()],
            "",
            "h:9093",
            "0@h:9093",
            &[listener("PLAINTEXT", "127.0.0.1", 9092)],
            &["CONTROLLER".to_string()],
            TIMEOUTS,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("needs a controller listener"), "{e}");
    }

    #[test]
    fn malformed_initial_controllers_are_refused_naming_the_key() {
        for (value, why) in [
            ("1@h", "Expected endpoints of the form host:port"),
            ("h:9093", "Expected entries of the form"),
            ("-1@h:9093", "Expected entries of the form"),
            ("1@h:dir", "Expected endpoints of the form host:port"),
            ("0@h:9093,0@g:9093", "Duplicate controller id 0"),
        ] {
            let e = initial("broker,controller", "", "h:9093", value).unwrap_err();
            assert!(
                e.contains(INITIAL_CONTROLLERS_KEY) && e.contains(why),
                "{value}: {e}"
            );
        }
    }

    fn broker_only(voters: &str, bootstrap: &str) -> Result<QuorumConfig, String> {
        parse_quorum(
            3,
            &["broker".to_string()],
            voters,
            bootstrap,
            "",
            &[listener("PLAINTEXT", "127.0.0.1", 9092)],
            &["CONTROLLER".to_string()],
            TIMEOUTS,
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_broker_only_node_observes_the_voters_or_the_bootstrap_servers() {
        let q = broker_only("0@h0:9093,1@h1:9093,2@h2:9093", "").unwrap();
        assert!(q.is_observer() && q.is_replicated());
        assert!(q.broker && !q.controller);
        assert_eq!(q.voters.len(), 3);
        // Kafka 4's way: only the controllers' addresses, their ids learnt from them.
        let q = broker_only("", "h0:9093,h1:9093").unwrap();
        assert!(q.is_observer());
        assert_eq!(q.bootstrap_servers.len(), 2);
        // ... and a single controller is enough for an observer.
        assert!(broker_only("0@h0:9093", "").unwrap().is_replicated());
    }

    #[test]
    fn a_broker_only_node_is_refused_as_kafka_refuses_it() {
        let e = broker_only("0@h0:9093,3@h3:9093", "").unwrap_err();
        assert_eq!(
            e,
            "If process.roles contains just the 'broker' role, the node id 3 must not be \
             included in the set of voters controller.quorum.voters=Set(0, 3)"
        );
        let e = broker_only("", "").unwrap_err();
        assert!(e.starts_with("If using process.roles, either"), "{e}");
        let e = parse_quorum(
            3,
            &["broker".to_string()],
            "0@h0:9093",
            "",
            "",
            &[listener("PLAINTEXT", "127.0.0.1", 9092)],
            &[],
            TIMEOUTS,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("with just the broker role"), "{e}");
    }

    #[test]
    fn a_controller_only_node_is_a_voter_of_a_replicated_quorum() {
        let q = parse_quorum(
            1,
            &["controller".to_string()],
            "1@127.0.0.1:9093",
            "",
            "",
            &[listener("CONTROLLER", "127.0.0.1", 9093)],
            &["CONTROLLER".to_string()],
            TIMEOUTS,
        )
        .unwrap();
        // Even alone in the voter list: it exists to serve other (broker-only) nodes.
        assert!(q.is_replicated() && !q.is_observer() && !q.broker);
    }

    #[test]
    fn a_voter_without_a_controller_listener_is_refused() {
        let e = parse_quorum(
            1,
            &[],
            "1@localhost:9093,2@localhost:9094",
            "",
            "",
            &[listener("PLAINTEXT", "127.0.0.1", 9092)],
            &[],
            TIMEOUTS,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("has no controller listener"), "{e}");
    }

    #[test]
    fn timeouts_must_be_positive() {
        let e = parse_quorum(
            1,
            &[],
            "",
            "",
            "",
            &[listener("PLAINTEXT", "127.0.0.1", 9092)],
            &[],
            QuorumTimeouts {
                fetch_timeout_ms: 0,
                ..TIMEOUTS
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("controller.quorum.fetch.timeout.ms"), "{e}");
    }
}
