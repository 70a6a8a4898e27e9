//! Network namespaces for partition tests (issue 8, fault 4): every node of a [`crate::Cluster`]
//! runs in its own namespace with two interfaces, one on a *client* bridge and one on an
//! *internal* bridge. Clients (this test process, Kafka's tools, kcat) reach the nodes over
//! the client bridge, whose host side has an address; brokers replicate and controllers vote
//! over the internal bridge only. Taking a node's internal link down isolates it from the other
//! nodes while clients still reach it, which is the partition a real network produces (no
//! packets, no resets) without `tc netem`.
//!
//! Needs root (`ip netns`, `ip link`). [`NetLab::create`] says why when it cannot work; the
//! caller skips with that message. Dropping a [`NetLab`] deletes its namespaces and bridges,
//! also when the test panicked.

use std::fs;
use std::process::Command;
use std::sync::Mutex;

/// Serialises subnet allocation between the tests of one process (other processes are told
/// apart by `ip link add` failing for a bridge name that exists).
static ALLOCATE: Mutex<()> = Mutex::new(());

/// The client port every namespaced node listens on (its own address, so no clashes).
pub const CLIENT_PORT: u16 = 9092;
/// The inter-broker (replication) port on the internal bridge.
pub const REPLICATION_PORT: u16 = 9093;
/// The controller (quorum) port on the internal bridge.
pub const CONTROLLER_PORT: u16 = 9094;

/// Two bridges and one namespace per node; see the module documentation.
pub struct NetLab {
    /// Index `k` of this lab: bridges `oxc<k>` / `oxi<k>`, subnets `10.201.<k>.0/24` (client)
    /// and `10.202.<k>.0/24` (internal).
    k: u8,
    nodes: usize,
    /// What exists, for Drop: namespaces and bridges created so far.
    namespaces: Vec<String>,
    bridges: Vec<String>,
}

/// Runs `ip` with `args`; Err with what it printed when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// True when this process runs with effective uid 0 (read from /proc: no unsafe libc call).
fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Ok when namespaces can be made here (root, `ip` installed); else why not, for a skip
/// message.
pub fn available() -> Result<(), String> {
    if !is_root() {
        return Err("network isolation needs root (ip netns, veth pairs, bridges)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => Err("network isolation needs the `ip` tool (iproute2)".into()),
    }
}

impl NetLab {
    /// Creates the bridges and `nodes` namespaces. Err (with the reason, for a skip message)
    /// when not root or `ip` cannot create namespaces here.
    pub fn create(nodes: usize) -> Result<NetLab, String> {
        available()?;
        let _guard = ALLOCATE.lock().unwrap_or_else(|p| p.into_inner());
        // The first free k: `ip link add` of an existing bridge fails, so concurrent test
        // processes cannot both take the same one. A lab dropped a moment ago may still hold
        // its veths (the kernel tears a namespace down asynchronously): a k whose links still
        // exist is skipped too.
        for k in 0..=250u8 {
            if ip(&["link", "add", &format!("oxc{k}"), "type", "bridge"]).is_err() {
                continue;
            }
            let mut lab = NetLab {
                k,
                nodes,
                namespaces: Vec::new(),
                bridges: vec![format!("oxc{k}")],
            };
            match lab.build() {
                Ok(()) => return Ok(lab),
                Err(e) if e.contains("File exists") => continue, // dropping `lab` cleans up
                Err(e) => return Err(e),
            }
        }
        Err("no free oxc<k> bridge name (stale labs? `ip link | grep oxc`)".to_string())
    }

    fn build(&mut self) -> Result<(), String> {
        let k = self.k;
        let (client, inter) = (format!("oxc{k}"), format!("oxi{k}"));
        ip(&["link", "add", &inter, "type", "bridge"])?;
        self.bridges.push(inter.clone());
        // The host's address on the client bridge: how the test process reaches the nodes.
        ip(&["addr", "add", &format!("10.201.{k}.254/24"), "dev", &client])?;
        ip(&["link", "set", &client, "up"])?;
        ip(&["link", "set", &inter, "up"])?;
        for i in 0..self.nodes {
            let ns = self.namespace(i);
            ip(&["netns", "add", &ns])?;
            self.namespaces.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            for (bridge, host_if, ns_if, addr) in [
                (&client, self.client_link(i), "eth0", self.client_addr(i)),
                (&inter, self.internal_link(i), "eth1", self.internal_addr(i)),
            ] {
                ip(&[
                    "link", "add", &host_if, "type", "veth", "peer", "name", ns_if, "netns", &ns,
                ])?;
                ip(&["link", "set", &host_if, "master", bridge, "up"])?;
                ip(&[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{addr}/24"),
                    "dev",
                    ns_if,
                ])?;
                ip(&["-n", &ns, "link", "set", ns_if, "up"])?;
            }
        }
        Ok(())
    }

    /// Namespace of node `i`.
    pub fn namespace(&self, i: usize) -> String {
        format!("oxbow-{}-{i}", self.k)
    }

    /// Node `i`'s address on the client bridge.
    pub fn client_addr(&self, i: usize) -> String {
        format!("10.201.{}.{}", self.k, i + 1)
    }

    /// Node `i`'s address on the internal (replication and controller) bridge.
    pub fn internal_addr(&self, i: usize) -> String {
        format!("10.202.{}.{}", self.k, i + 1)
    }

    /// Host side of node `i`'s client veth.
    fn client_link(&self, i: usize) -> String {
        format!("oxc{}n{i}", self.k)
    }

    /// Host side of node `i`'s internal veth: down means node `i` is cut off from the others.
    fn internal_link(&self, i: usize) -> String {
        format!("oxi{}n{i}", self.k)
    }

    /// Cuts node `i` off from the other nodes; clients still reach it.
    pub fn isolate(&self, i: usize) {
        if let Err(e) = ip(&["link", "set", &self.internal_link(i), "down"]) {
            panic!("isolating node {i}: {e}");
        }
    }

    /// Reconnects node `i` to the other nodes.
    pub fn heal(&self, i: usize) {
        if let Err(e) = ip(&["link", "set", &self.internal_link(i), "up"]) {
            panic!("healing node {i}: {e}");
        }
    }

    /// A one-way cut of node `i`: new TCP connections to its `port` can be dropped (see
    /// [`InboundCut`]).
    pub fn inbound_cut(&self, i: usize, port: u16) -> InboundCut {
        InboundCut {
            namespace: self.namespace(i),
            port,
        }
    }
}

/// Drops new TCP connections to one port inside one node's namespace while set: connections
/// that node opens itself still work, so the other nodes cannot reach it while it reaches
/// them (a one-way cut, as while a restarted pod's new address is not in DNS yet). Needs
/// `iptables` in the namespace; panics with its message otherwise. A plain value, so another
/// thread can lift the cut while the test waits on the node.
#[derive(Debug, Clone)]
pub struct InboundCut {
    namespace: String,
    port: u16,
}

impl InboundCut {
    /// Starts dropping new connections.
    pub fn apply(&self) {
        self.iptables("-I");
    }

    /// Stops dropping them.
    pub fn lift(&self) {
        self.iptables("-D");
    }

    fn iptables(&self, action: &str) {
        let ns = &self.namespace;
        let port = self.port.to_string();
        let out = Command::new("ip")
            .args([
                "netns", "exec", ns, "iptables", action, "INPUT", "-p", "tcp",
            ])
            .args(["--dport", &port, "--syn", "-j", "DROP"])
            .output();
        match out {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "iptables {action} in {ns}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => panic!("cannot run iptables in {ns}: {e}"),
        }
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth ends and with them the host-side peers.
        for ns in self.namespaces.drain(..) {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("netns cleanup: {e}");
            }
        }
        for bridge in self.bridges.drain(..) {
            if let Err(e) = ip(&["link", "del", &bridge]) {
                eprintln!("netns cleanup: {e}");
            }
        }
    }
}
